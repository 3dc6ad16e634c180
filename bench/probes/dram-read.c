/* DRAM read bandwidth: every core streams its share of a buffer far larger than the caches, with the
 * widest vector loads the compiler has (64-byte vectors: one AVX-512 load per element under
 * -march=native on AVX-512 machines, two AVX2 loads elsewhere), XOR-folded so that nothing can be
 * optimized away. Prints one JSON line with the best of several runs.
 * Build: cc -O3 -march=native -fopenmp dram-read.c -o dram-read.  Run: ./dram-read [MiB] [runs] */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef long long vec __attribute__((vector_size(64)));

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 2048;
  int runs = argc > 2 ? atoi(argv[2]) : 7;
  size_t bytes = mib << 20, n = bytes / sizeof(vec);
  vec *a = aligned_alloc(4096, bytes);
  if (!a || n % 8) {
    fprintf(stderr, "dram-read: cannot allocate %zu MiB in multiples of 512 bytes\n", mib);
    return 1;
  }
  /* First touch by the thread that will read the page, with non-zero data. */
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) a[i] = (vec){(long long)i, 1, 2, 3, 4, 5, 6, (long long)~i};

  double gbs[64];
  if (runs < 1 || runs > 64) runs = 7;
  vec sink = {0};
  for (int r = 0; r < runs; r++) {
    vec total = {0};
    double t0 = omp_get_wtime();
#pragma omp parallel
    {
      vec s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
#pragma omp for schedule(static) nowait
      for (size_t i = 0; i < n; i += 8) {
        s0 ^= a[i] ^ a[i + 4];
        s1 ^= a[i + 1] ^ a[i + 5];
        s2 ^= a[i + 2] ^ a[i + 6];
        s3 ^= a[i + 3] ^ a[i + 7];
      }
#pragma omp critical
      total ^= s0 ^ s1 ^ s2 ^ s3;
    }
    double t = omp_get_wtime() - t0;
    sink ^= total;
    gbs[r] = (double)bytes / t / 1e9;
  }
  /* Sorted, for best (the limit), median and worst (how much the machine's other load moved it). */
  for (int i = 1; i < runs; i++)
    for (int j = i; j > 0 && gbs[j - 1] > gbs[j]; j--) {
      double x = gbs[j];
      gbs[j] = gbs[j - 1];
      gbs[j - 1] = x;
    }
  long long check = 0;
  for (int i = 0; i < 8; i++) check ^= sink[i];
#ifdef __AVX512F__
  int bits = 512;
#elif defined(__AVX2__)
  int bits = 256;
#else
  int bits = 128;
#endif
  printf("{\"gb_per_s\": %.3f, \"median_gb_per_s\": %.3f, \"worst_gb_per_s\": %.3f, \"bytes\": %zu, \"runs\": %d, \"threads\": %d, \"load_bits\": %d, \"checksum\": %lld}\n",
         gbs[runs - 1], gbs[runs / 2], gbs[0], bytes, runs, omp_get_max_threads(), bits, check);
  free(a);
  return 0;
}
