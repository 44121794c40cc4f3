from setuptools import find_packages, setup

setup(
    name="minigrad",
    version="0.1.0",
    description="A small autodiff framework on NumPy/CuPy for backprop-to-image techniques",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["minigrad*", "kernels*", "methods*", "weights*", "benchmarks*", "training*"]),
    package_data={
        "kernels": ["gpu/*.cu", "gpu/*.h"],
        "weights": ["*.safetensors", "*.log", "*.json", "*.txt", "LICENSES*", "data/*"],
        "methods": ["data/*", "data/LICENSES*", "explore/static/*"],
    },
    include_package_data=True,
    install_requires=["numpy>=1.24", "numba>=0.59", "pillow>=9", "matplotlib>=3.6"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80", "selenium>=4.11"],
        "oracle": ["torch", "scipy", "scikit-image", "scikit-learn", "opencv-python-headless", "openTSNE"],
        "gpu": ["cupy-cuda12x"],
        "distributed": ["dask[distributed]"],
    },
)
