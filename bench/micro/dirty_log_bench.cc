// Dirty-log fetch cost against the size of the tracked memory (Google Benchmark).
// Each iteration writes one byte in `kDirtyPages` pages spread over the range (not timed),
// then times fetch_and_clear(). The range is mapped MAP_NORESERVE and mostly never touched,
// so 64 GiB fits a 24 GiB host: what grows with it is the kernel's page-table walk.
#include <benchmark/benchmark.h>

#include <cstdio>

#include "ramshift/base/mapped_memory.h"
#include "ramshift/guest/dirty_tracker.h"

namespace {

using namespace ramshift;
constexpr uint64_t kDirtyPages = 4096;  // 16 MiB dirtied per round at 4 KiB pages

void BM_DirtyLog_Fetch(benchmark::State& state) {
  const uint64_t bytes = uint64_t(state.range(0)) << 30;
  auto mem = MappedMemory::anonymous(bytes);
  if (!mem) return state.SkipWithError(mem.status().message().c_str());
  auto tracker = guest::DirtyTracker::start(mem->bytes());
  if (!tracker) return state.SkipWithError(tracker.status().message().c_str());
  const uint64_t ps = host_page_size();
  const uint64_t pages = bytes / ps;
  const uint64_t stride = pages / kDirtyPages;
  std::byte* base = mem->bytes().data();
  uint64_t generation = 0, fetched = 0;
  for (auto _ : state) {
    state.PauseTiming();
    ++generation;
    for (uint64_t i = 0; i < kDirtyPages; ++i) base[(i * stride) * ps] = std::byte(generation);
    state.ResumeTiming();
    auto dirty = (*tracker)->fetch_and_clear();
    if (!dirty) return state.SkipWithError(dirty.status().message().c_str());
    fetched += dirty->size();
  }
  state.counters["dirty_pages_per_fetch"] = double(fetched) / state.iterations();
  state.SetLabel(guest::dirty_mechanism_name((*tracker)->mechanism()));
}
BENCHMARK(BM_DirtyLog_Fetch)
    ->Arg(1)
    ->Arg(16)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(20);

}  // namespace

BENCHMARK_MAIN();
