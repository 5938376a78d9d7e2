# Sourced by experiments/*_cpu.sh (from the repository root): the quickstart config with a tiny model
# and data (EDSR-baseline 1 x 8 features, MLP [16], batches of 8 crops of 16 px, 64 queries each),
# no final evaluation; each script adds its own steps and intervals.
tiny_quickstart=(--config liif_jax/configs/quickstart.py
  --config.model.args.encoder_spec.args.n_resblocks=1 --config.model.args.encoder_spec.args.n_feats=8
  "--config.model.args.imnet_spec.args.hidden_list=(16,)" --config.init=
  --config.data.train.batch_size=8 --config.data.val.batch_size=8
  --config.data.train.wrapper.args.inp_size=16 --config.data.train.wrapper.args.sample_q=64
  --config.data.val.wrapper.args.inp_size=16 --config.data.val.wrapper.args.sample_q=64
  "--config.final_eval.scales=()")
