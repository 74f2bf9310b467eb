#!/bin/sh
# The directory of BLAKE3's reference C sources (blake3.h, blake3.c, ...), for binding.gyp: the
# newest blake3 crate that Debian's librust-blake3-dev unpacked. Prints nothing when there is none
# (the addon build then fails, and scripts/setup.d/20-addon.sh reports it).
ls -d /usr/share/cargo/registry/blake3-*/c 2>/dev/null | sort -V | tail -n 1
