"""Builds the optional C ring kernels; everything else is declared in pyproject.toml.

If no C compiler is available the package still installs and runs on the pure-torch kernels
(slower, same results).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - a missing compiler must not break install
            print(f"smpc: C ring kernels not built ({exc}); using the pure-torch kernels")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"smpc: C ring kernels not built ({exc}); using the pure-torch kernels")


setup(
    ext_modules=[
        # one extension from several sources: the ring arithmetic, the AES-CTR keystream and the
        # fused protocol terms (smpc/csrc/kernels.h says what they share)
        Extension(
            "smpc._ringkernels",
            [f"smpc/csrc/{name}.c" for name in ("ring", "aes_ctr", "rss_terms", "module")],
            depends=["smpc/csrc/kernels.h"],
            extra_compile_args=["-O3"],
        ),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
