from setuptools import find_packages, setup

setup(
    name="megatron-vl",
    version="0.1.0",
    description="Pre-training stack for MiMo-VL-style vision-language models on megatron-core",
    python_requires=">=3.10",
    packages=find_packages(include=["megatron_vl", "megatron_vl.*", "data_prep", "data_prep.*",
                                    "checkpoints_tools", "checkpoints_tools.*"]),
    install_requires=[
        # Install torch first on CPU machines (pip install torch==2.13.0): any range pulls CUDA wheels.
        "torch>=2.4",
        "megatron-core>=0.16.1",
        "transformers>=4.52",
        "tokenizers>=0.21",
        "sentencepiece>=0.2",
        "safetensors>=0.4",
        "numpy>=1.24",
        "pillow>=10",
        "psutil>=5.9",
        "tqdm>=4.60",
        "einops>=0.7",
        "tensorboard>=2.14",
        "matplotlib>=3.7",
        "fsspec>=2024.6",
        "webdataset>=0.2.100",
        "braceexpand>=0.1.7",
        "av>=14",  # PyAV: ingest decodes video files with it
    ],
    extras_require={
        "gpu": ["transformer-engine[pytorch]>=2.0", "flash-attn>=2.6"],
        # Object storage: s3:// (and S3-compatible stores) and gs:// through fsspec; https:// needs only aiohttp.
        "cloud": ["s3fs>=2024.6", "gcsfs>=2024.6", "aiohttp>=3.9"],
        "test": ["pytest>=8", "pytest-timeout>=2.3", "moto[server]>=5.0", "s3fs>=2024.6", "aiohttp>=3.9"],
    },
)
