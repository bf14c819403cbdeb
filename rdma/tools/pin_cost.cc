// rdma_pin_cost: what registering memory for RDMA costs on this kernel, in the shapes the
// migration engine registers it. Not part of ramshift; the figures behind two choices in
// docs/benchmarks/README.md (the soft-RoCE section, "Pinning cost").
//
//   rdma_pin_cost [MIB (128)] [ROUNDS (3)] [IMAGE_DIR (/tmp)]
//
// Destination: anonymous memory registered for remote writes in 4 MiB chunks, as the
// destination does, under the default THP policy, MADV_NOHUGEPAGE and MADV_HUGEPAGE.
// Source: an image file in IMAGE_DIR registered for local reads, mapped MAP_PRIVATE
// read-only (a private copy of every page before Linux 6.2, which pins as if for writing)
// and MAP_SHARED read-write (no copy). Prints each round and the median, in seconds.
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace {

constexpr size_t kChunk = 4u << 20;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Registers [p, p + bytes) in 4 MiB chunks and deregisters it; seconds for the registering.
double register_chunks(ibv_pd* pd, std::byte* p, size_t bytes, int access) {
  std::vector<ibv_mr*> mrs;
  auto t = std::chrono::steady_clock::now();
  for (size_t off = 0; off < bytes; off += kChunk) {
    ibv_mr* mr = ibv_reg_mr(pd, p + off, std::min(kChunk, bytes - off), access);
    if (mr == nullptr) {
      std::perror("ibv_reg_mr");
      std::exit(1);
    }
    mrs.push_back(mr);
  }
  double s = seconds_since(t);
  for (ibv_mr* mr : mrs) ibv_dereg_mr(mr);
  return s;
}

std::byte* map_or_die(size_t bytes, int prot, int flags, int fd) {
  void* p = mmap(nullptr, bytes, prot, flags, fd, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return static_cast<std::byte*>(p);
}

void report(const char* what, std::vector<double> runs) {
  std::printf("%-52s", what);
  for (double r : runs) std::printf(" %6.3f", r);
  std::sort(runs.begin(), runs.end());
  std::printf("   median %.3f s\n", runs[runs.size() / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  const size_t bytes = (argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 128) << 20;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::string image = std::string(argc > 3 ? argv[3] : "/tmp") + "/rdma_pin_cost.img";
  if (bytes == 0 || rounds < 1) {
    std::fprintf(stderr, "usage: %s [MIB] [ROUNDS] [IMAGE_DIR]\n", argv[0]);
    return 2;
  }
  int devices = 0;
  ibv_device** list = ibv_get_device_list(&devices);
  if (list == nullptr || devices == 0) {
    std::fprintf(stderr, "no RDMA device found\n");
    return 77;
  }
  ibv_context* ctx = ibv_open_device(list[0]);
  ibv_pd* pd = ctx ? ibv_alloc_pd(ctx) : nullptr;
  if (pd == nullptr) {
    std::fprintf(stderr, "cannot open %s\n", ibv_get_device_name(list[0]));
    return 1;
  }
  {  // the image: written once, not mapped, so its pages sit in the page cache
    int fd = open(image.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    std::vector<char> block(1 << 20, 'x');
    for (size_t off = 0; fd >= 0 && off < bytes; off += block.size())
      if (write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) break;
    if (fd < 0 || close(fd) != 0) {
      std::perror(image.c_str());
      return 1;
    }
  }
  const int remote_write = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
  std::printf("%zu MiB on %s, %d rounds, seconds to register\n", bytes >> 20,
              ibv_get_device_name(list[0]), rounds);
  auto rounds_of = [&](const std::function<double()>& one) {
    std::vector<double> runs;
    for (int i = 0; i < rounds; ++i) runs.push_back(one());
    return runs;
  };
  auto anonymous = [&](int advice) {
    return [&, advice] {
      std::byte* p = map_or_die(bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
      if (advice != 0) madvise(p, bytes, advice);
      double s = register_chunks(pd, p, bytes, remote_write);
      munmap(p, bytes);
      return s;
    };
  };
  auto file = [&](bool shared) {
    return [&, shared] {
      int fd = open(image.c_str(), shared ? O_RDWR : O_RDONLY);
      std::byte* p = map_or_die(bytes, shared ? PROT_READ | PROT_WRITE : PROT_READ,
                                shared ? MAP_SHARED : MAP_PRIVATE, fd);
      double s = register_chunks(pd, p, bytes, 0);
      munmap(p, bytes);
      close(fd);
      return s;
    };
  };
  report("destination, anonymous, default THP policy", rounds_of(anonymous(0)));
  report("destination, anonymous, MADV_NOHUGEPAGE", rounds_of(anonymous(MADV_NOHUGEPAGE)));
  report("destination, anonymous, MADV_HUGEPAGE", rounds_of(anonymous(MADV_HUGEPAGE)));
  report("source image, MAP_PRIVATE read-only", rounds_of(file(false)));
  report("source image, MAP_SHARED read-write", rounds_of(file(true)));
  unlink(image.c_str());
  ibv_dealloc_pd(pd);
  ibv_close_device(ctx);
  ibv_free_device_list(list);
  return 0;
}
