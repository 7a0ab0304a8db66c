"""ltpa_jax: "Learn To Pay Attention" (Jetley et al., ICLR 2018) in JAX/Flax."""
