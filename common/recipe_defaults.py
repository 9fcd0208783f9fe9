"""What a merge recipe falls back on, named once; torch-free, so the CLIs can show it."""

DEFAULT_LATENT_MERGE = "harmonic"  # the paper's latent merge (MM-Lego, Sec. 3.2)
DEFAULT_HEAD_MERGE = "spherical"  # an N-way spherical mean of the heads, SLERP for two
DEFAULT_POLICY = "uniform"  # ``merge --recipe``: publish the uniform merge of every block
