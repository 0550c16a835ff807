#!/usr/bin/env bash
# Build .devsite/site.tar.xz for tools/cuda-check.sh: the packages a lent GPU machine lacks
# (its image has Python 3.12 and torch, no PyPI), as cp312 wheels unpacked into one folder,
# without gymnasium-robotics' robot assets (45 MB; MaMuJoCo uses gymnasium's MuJoCo models),
# so that the repository and this tarball fit the 64 MiB a call may carry. Run in the repo root:
#   bash tools/make-devsite.sh && echo /.devsite/ >> .git/info/exclude
set -euo pipefail
versions() { .venv/bin/pip show "$1" | awk '/^Version/{print $2}'; }
tmp=$(mktemp -d)
for pkg in gymnasium farama-notifications mujoco mujoco-core gymnasium-robotics pettingzoo minari glfw stable-baselines3; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$tmp/wheels" "$pkg==$(versions "$pkg")"
done
mkdir -p "$tmp/devsite"
for w in "$tmp"/wheels/*.whl; do unzip -q -o "$w" -d "$tmp/devsite"; done
rm -rf "$tmp"/devsite/gymnasium_robotics/envs/{assets,adroit_hand,fetch,franka_kitchen,shadow_dexterous_hand}
mkdir -p .devsite && tar -C "$tmp" -cJf .devsite/site.tar.xz devsite
rm -rf "$tmp"
ls -l .devsite/site.tar.xz
