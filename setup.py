"""Packaging for plp, the PersonalLearningPro server core."""

from setuptools import find_packages, setup

setup(
    name="plp",
    version="0.1.0",
    description="PersonalLearningPro server core: accounts, sessions and realtime class chat",
    python_requires=">=3.11",
    packages=find_packages(include=["plp", "plp.*"]),
    package_data={"plp": ["data/*"], "plp.redis": ["*.lua"]},
    include_package_data=True,
    install_requires=[
        "tornado>=6.4,<7",
        "bcrypt>=4.1",
        "webauthn>=2.2,<4",
        "pyotp>=2.9",
        "segno>=1.6",
        # AES-GCM sealing of TOTP secrets (plp/auth/secretbox.py); webauthn needs it too.
        "cryptography>=42",
    ],
    extras_require={
        "redis": ["redis>=5"],
        "postgres": ["psycopg[binary]>=3.1", "psycopg-pool>=3.2"],
        "metrics": ["prometheus-client>=0.20"],
        "binary": ["pyinstaller>=6.10"],
        "test": [
            "pytest>=8,<10",
            "pytest-tornado==0.8.1",
            "setuptools<82",
            "playwright>=1.45",
            "axe-playwright-python>=0.1.8,<0.2",
            "ruff>=0.5",
            "redis>=5",
            "psycopg[binary]>=3.1",
            "psycopg-pool>=3.2",
            "prometheus-client>=0.20",
            "pyinstaller>=6.10",
            "cryptography>=42",
            "pyyaml>=6",
            "openapi-spec-validator>=0.7,<1",
            "schemathesis>=4.32,<5",
        ],
    },
    entry_points={"console_scripts": ["plp = plp.cli:main"]},
)
