#include "memory_preparer.h"

#include <algorithm>
#include <chrono>

namespace ramshift::migration {
namespace {
constexpr uint64_t kAlign = 2ull << 20;
constexpr uint64_t kMinChunk = 2ull << 20;
constexpr uint64_t kMaxChunk = 32ull << 20;
// Why one thread up to 4 GiB: a second one competes with the data path for the same CPUs
// and gains nothing while one thread outpaces the link; pinning tens of GiB is where the
// parallel registration of UCX's practice pays.
constexpr uint64_t kBytesPerThread = 4ull << 30;
constexpr uint64_t kMaxThreads = 4;
}  // namespace

Result<wire::MemoryKeys> register_for_writes(transport::Connection& conn, uint32_t region,
                                             uint64_t offset, std::span<std::byte> chunk) {
  const bool per_queue = conn.capabilities().keys_per_queue;
  auto key = per_queue
                 ? conn.register_memory_per_queue(chunk, transport::MemoryAccess::kRemoteWrite)
                 : conn.register_memory(chunk, transport::MemoryAccess::kRemoteWrite);
  if (!key) return key.status().with_context("destination guest memory");
  wire::MemoryKeys keys;
  const uint64_t piece = key->chunk_bytes == 0 ? chunk.size() : key->chunk_bytes;
  for (size_t i = 0; i < key->rkeys.size(); ++i) {
    const uint64_t len = std::min<uint64_t>(piece, chunk.size() - i * piece);
    wire::KeyRange k{region, offset + i * piece, len, key->address + i * piece, key->rkeys[i], {}};
    if (per_queue)
      k.queue_rkeys.assign(key->queue_rkeys.begin() + i * key->queues,
                           key->queue_rkeys.begin() + (i + 1) * key->queues);
    keys.ranges.push_back(std::move(k));
  }
  return keys;
}

uint64_t MemoryPreparer::chunk_bytes(uint64_t bytes) {
  uint64_t c = (bytes / 32 + kAlign - 1) / kAlign * kAlign;
  return std::clamp(c, kMinChunk, kMaxChunk);
}

MemoryPreparer::MemoryPreparer(std::vector<std::span<std::byte>> regions, PrepareFn prepare)
    : prepare_(std::move(prepare)) {
  uint64_t total_bytes = 0;
  for (auto span : regions) {
    Region r;
    r.memory = span;
    r.chunk = chunk_bytes(span.size());
    r.chunks = (span.size() + r.chunk - 1) / r.chunk;
    r.done = std::make_unique<std::atomic<bool>[]>(r.chunks);
    first_index_.push_back(total_chunks_);
    total_chunks_ += r.chunks;
    total_bytes += span.size();
    regions_.push_back(std::move(r));
  }
  uint64_t threads = std::clamp<uint64_t>(total_bytes / kBytesPerThread, 1, kMaxThreads);
  threads = std::min<uint64_t>(threads, std::max(1u, std::thread::hardware_concurrency()));
  if (total_chunks_ == 0) return;
  for (uint64_t i = 0; i < threads; ++i) threads_.emplace_back([this] { worker(); });
}

MemoryPreparer::~MemoryPreparer() {
  stop_ = true;
  for (auto& t : threads_) t.join();
}

void MemoryPreparer::worker() {
  for (;;) {
    if (stop_.load(std::memory_order_relaxed)) return;
    uint64_t i = next_.fetch_add(1);
    if (i >= total_chunks_) return;
    uint32_t r = static_cast<uint32_t>(
        std::upper_bound(first_index_.begin(), first_index_.end(), i) - first_index_.begin() - 1);
    Region& region = regions_[r];
    uint64_t c = i - first_index_[r];
    uint64_t offset = c * region.chunk;
    uint64_t len = std::min<uint64_t>(region.chunk, region.memory.size() - offset);
    Status s = prepare_(r, offset, region.memory.subspan(offset, len));
    {
      std::lock_guard lock(mu_);
      if (!s.is_ok()) {
        if (error_.is_ok()) error_ = s;
        stop_ = true;
      } else {
        region.done[c].store(true, std::memory_order_release);
      }
    }
    cv_.notify_all();
    if (!s.is_ok()) return;
  }
}

bool MemoryPreparer::ready(uint32_t region, uint64_t begin, uint64_t end) const {
  if (region >= regions_.size() || end <= begin) return end <= begin;
  const Region& r = regions_[region];
  uint64_t last = std::min<uint64_t>((end - 1) / r.chunk, r.chunks - 1);
  for (uint64_t c = begin / r.chunk; c <= last; ++c)
    if (!r.done[c].load(std::memory_order_acquire)) return false;
  return true;
}

Status MemoryPreparer::wait_ready(uint32_t region, uint64_t begin, uint64_t end,
                                  const std::atomic<bool>& stop) {
  if (ready(region, begin, end)) return Status::ok();
  std::unique_lock lock(mu_);
  for (;;) {
    if (!error_.is_ok()) return error_;
    if (ready(region, begin, end)) return Status::ok();
    if (stop.load()) return Status(ErrorCode::kCancelled, "cancelled");
    // The timeout only re-checks `stop`, which its owner sets without this lock.
    cv_.wait_for(lock, std::chrono::milliseconds(50));
  }
}

Status MemoryPreparer::status() const {
  std::lock_guard lock(mu_);
  return error_;
}

Status MemoryPreparer::finish() {
  for (auto& t : threads_) t.join();
  threads_.clear();
  std::lock_guard lock(mu_);
  return error_;
}

}  // namespace ramshift::migration
