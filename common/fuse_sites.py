"""Who trains in LegoFuse rounds, named once; torch-free, so the CLIs can check it first.

"paired" (the default): the sites with paired data, each on its patients having every modality
of the model it holds. "all": every site holding at least one of the model's modalities, each on
its patients having at least one (the model skips the blocks of the modalities a patient lacks).
docs/EVALUATION.md, section 6, says what each does and why the default is "paired"."""

FUSE_SITES: tuple[str, ...] = ("paired", "all")
DEFAULT_FUSE_SITES = "paired"


def check_fuse_sites(sites: str) -> str:
    """``sites`` if it names a known rule of who trains, else ValueError naming the known ones."""
    if sites not in FUSE_SITES:
        raise ValueError(f"fuse sites must be one of {', '.join(FUSE_SITES)}, got {sites!r}")
    return sites
