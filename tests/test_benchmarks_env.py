"""The benchmark's machine report names the BLAS kernels that ran and warns when
OPENBLAS_CORETYPE holds back an AVX-512 CPU."""

from benchmarks.env import blas_caveat, blas_summary


def _info(coretype=None, flags=("avx2", "fma", "avx512f"), architecture="Haswell"):
    return {"env": {} if coretype is None else {"OPENBLAS_CORETYPE": coretype}, "cpu_flags": list(flags),
            "blas": [{"internal_api": "openblas", "architecture": architecture}]}


def test_warns_when_the_variable_pins_older_kernels_on_an_avx512_cpu():
    caveat = blas_caveat(_info("Haswell"))
    assert "OPENBLAS_CORETYPE=Haswell" in caveat and "env -u OPENBLAS_CORETYPE" in caveat


def test_silent_when_unset_when_the_cpu_lacks_avx512_or_the_kernels_are_avx512():
    assert blas_caveat(_info()) is None
    assert blas_caveat(_info("Haswell", flags=("avx2", "fma"))) is None
    assert blas_caveat(_info("SkylakeX", architecture="SkylakeX")) is None


def test_summary_names_library_version_kernels_and_the_forcing_variable():
    info = _info("Haswell")
    info["blas"][0]["version"] = "0.3.31"
    assert blas_summary(info) == "openblas 0.3.31, Haswell kernels (OPENBLAS_CORETYPE=Haswell)"
    assert blas_summary(_info(architecture="SkylakeX")) == "openblas, SkylakeX kernels"
    assert "unknown" in blas_summary({"env": {}, "blas": None})
