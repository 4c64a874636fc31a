{
  "targets": [
    {
      "target_name": "vigil_kernels",
      "sources": ["vigil_kernels.c"],
      # -ffp-contract=off: no fused multiply-add, so every result is bit-identical to the
      # JavaScript kernels (which round after each operation). -O3 vectorizes the loops; hot
      # functions are also compiled for AVX2 and picked at load time (target_clones).
      "cflags": ["-O3", "-std=c11", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags!": ["-O2", "-O0"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O3", "-ffp-contract=off"] }
    }
  ]
}
