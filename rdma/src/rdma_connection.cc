#include "rdma_connection.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>

#include "host_limits.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"

namespace ramshift::transport::rdma {
namespace {
// UCX's practice: ranges of 4 GiB and more register as 2 GiB chunks, in parallel. From
// 64 MiB, one chunk per CPU (at most 8, 2 MiB-aligned): pinning is per-page work, and the
// set-up of every migration waits for it.
constexpr uint64_t kParallelFrom = 4ull << 30;
constexpr uint64_t kChunkBytes = 2ull << 30;
constexpr uint64_t kSplitFrom = 64ull << 20;
constexpr uint64_t kChunkAlign = 2ull << 20;

uint64_t chunk_size_for(uint64_t bytes) {
  if (bytes >= kParallelFrom) return kChunkBytes;
  const uint64_t cpus = std::clamp<uint64_t>(std::thread::hardware_concurrency(), 1, 8);
  if (bytes < kSplitFrom || cpus == 1) return bytes;
  uint64_t chunk = (bytes + cpus - 1) / cpus;
  return (chunk + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
}
}  // namespace

RdmaConnection::RdmaConnection(EventChannel channel, SharedPd pd,
                               std::vector<std::unique_ptr<RdmaQueue>> queues,
                               std::string description)
    : channel_(std::move(channel)),
      pd_(std::move(pd)),
      queues_(std::move(queues)),
      description_(std::move(description)) {
  caps_.zero_copy_write = true;
  caps_.remote_read = true;
  caps_.max_message = RdmaQueue::kMaxMessage;
  caps_.max_queues = 256;
  for (size_t i = 0; i < queues_.size(); ++i) queues_[i]->id()->context = queues_[i].get();
  wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  int fl = fcntl(channel_->fd, F_GETFL);
  fcntl(channel_->fd, F_SETFL, fl | O_NONBLOCK);
  cm_thread_ = std::thread([this] { watch_cm_events(); });
}

RdmaConnection::~RdmaConnection() {
  close();
  wait_for_port();
  stop_ = true;
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_.get(), &one, sizeof one);
  if (cm_thread_.joinable()) cm_thread_.join();
  // Each queue drains its completions and joins its poller before its QP and id go.
  queues_.clear();
}

// Every CM event is acknowledged at once: destroying an id waits for its unacked events.
void RdmaConnection::watch_cm_events() {
  while (!stop_) {
    pollfd fds[2] = {{channel_->fd, POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, 200) <= 0) continue;
    if (fds[1].revents & POLLIN) continue;  // stop_ is checked by the loop
    rdma_cm_event* ev = nullptr;
    while (rdma_get_cm_event(channel_.get(), &ev) == 0) {
      auto* q = static_cast<RdmaQueue*>(ev->id ? ev->id->context : nullptr);
      auto type = ev->event;
      rdma_ack_cm_event(ev);
      if (!q) continue;
      if (type == RDMA_CM_EVENT_DISCONNECTED || type == RDMA_CM_EVENT_DEVICE_REMOVAL ||
          type == RDMA_CM_EVENT_TIMEWAIT_EXIT) {
        log::debug("rdma: {}", rdma_event_str(type));
        q->peer_disconnected();
      }
    }
  }
}

void RdmaConnection::close() {
  for (auto& q : queues_) q->close();
}

// Before the ids go: a port that went down gets the peer timeout (counted from when it went
// down) to come back, so that the disconnect requests close() held back leave on a working
// port (rdma_queue.cc, RdmaQueue::close says why). A cut link is given up on at that
// deadline, which the queues' own liveness check reached already.
void RdmaConnection::wait_for_port() {
  std::optional<std::chrono::steady_clock::time_point> since;
  std::chrono::milliseconds limit{0};
  for (auto& q : queues_)
    if (auto s = q->port_down_since(); s && (!since || *s < *since)) {
      since = s;
      limit = q->peer_timeout();
    }
  if (since) {
    const auto deadline = *since + limit;
    log::info("rdma: the port is down; waiting up to {} ms for it before disconnecting",
              std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                       deadline - std::chrono::steady_clock::now())
                                       .count()));
    for (;;) {
      bool down = false;
      for (auto& q : queues_) down = down || q->port_down_since().has_value();
      if (!down || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  for (auto& q : queues_) q->finish_disconnect();
}

Status RdmaConnection::check(uint32_t queue) const {
  if (queue >= queues_.size())
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("queue {} does not exist ({} queues)", queue, queues_.size()));
  return Status::ok();
}

Result<MemoryKey> RdmaConnection::register_memory(std::span<std::byte> memory,
                                                  MemoryAccess access) {
  const std::string what = fmt::format("{} of guest memory", format_bytes(memory.size()));
  RS_RETURN_IF_ERROR(check_memlock(memory.size(), what));
  // The source only reads its guest memory (which may be a read-only file mapping); only
  // the destination lets the peer write, and only for this connection's lifetime. The peer
  // reads the source's memory only while post-copy runs, with the guest paused for good:
  // REMOTE_READ without LOCAL_WRITE pins it read-only, which is right for memory that no
  // longer changes (an untouched page pinned as the zero page stays zero).
  int flags = 0;
  switch (access) {
    case MemoryAccess::kLocal:
      break;
    case MemoryAccess::kRemoteWrite:
      flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
      break;
    case MemoryAccess::kRemoteRead:
      if (!caps_.remote_read)
        return Status(ErrorCode::kInvalidArgument,
                      "rdma: no one-sided reads on a connection with --encrypt (they would "
                      "carry guest memory in clear)");
      flags = IBV_ACCESS_REMOTE_READ;
      break;
    case MemoryAccess::kReadTarget:
      flags = IBV_ACCESS_LOCAL_WRITE;
      break;
  }
  const uint64_t chunk = chunk_size_for(memory.size());
  const size_t chunks = chunk == 0 ? 0 : (memory.size() + chunk - 1) / chunk;
  std::vector<MemoryRegion> mrs(chunks);
  std::vector<int> errs(chunks, 0);
  auto reg = [&](size_t i) {
    size_t off = i * chunk;
    size_t len = std::min<uint64_t>(chunk, memory.size() - off);
    mrs[i].reset(ibv_reg_mr(pd_.get(), memory.data() + off, len, flags));
    if (!mrs[i]) errs[i] = errno;
  };
  if (chunks <= 1) {
    if (chunks == 1) reg(0);
  } else {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < chunks; ++i) threads.emplace_back(reg, i);
    for (auto& t : threads) t.join();
  }
  for (size_t i = 0; i < chunks; ++i)
    if (!mrs[i]) return registration_error(errs[i], memory.size(), what);
  MemoryKey key;
  key.address = reinterpret_cast<uint64_t>(memory.data());
  key.length = memory.size();
  key.chunk_bytes = chunks > 1 ? chunk : 0;
  for (auto& mr : mrs) key.rkeys.push_back(mr->rkey);
  std::lock_guard lock(mr_mu_);
  // Kept sorted by address: lkey_for() searches it for every write, and a large guest
  // registered piece by piece holds thousands.
  for (auto& mr : mrs) {
    auto at = std::upper_bound(
        guest_mrs_.begin(), guest_mrs_.end(), mr->addr,
        [](void* addr, const MemoryRegion& m) { return std::less<void*>()(addr, m->addr); });
    guest_mrs_.insert(at, std::move(mr));
  }
  return key;
}

Status RdmaConnection::release_memory(const MemoryKey& key) {
  std::vector<MemoryRegion> gone;
  {
    std::lock_guard lock(mr_mu_);
    for (uint32_t rkey : key.rkeys) {
      auto it = std::find_if(guest_mrs_.begin(), guest_mrs_.end(), [&](const MemoryRegion& m) {
        const auto a = reinterpret_cast<uint64_t>(m->addr);
        return m->rkey == rkey && a >= key.address && a < key.address + key.length;
      });
      if (it == guest_mrs_.end()) continue;
      gone.push_back(std::move(*it));
      guest_mrs_.erase(it);
    }
  }
  if (gone.empty() && !key.rkeys.empty())
    return Status(ErrorCode::kNotFound, "rdma: no memory registered under those keys");
  // Deregistered here, outside the lock; the rkeys are invalid from then on.
  for (auto& mr : gone)
    if (int rc = ibv_dereg_mr(mr.release()); rc != 0)
      return errno_status(ErrorCode::kIo, "ibv_dereg_mr", rc);
  return Status::ok();
}

Status RdmaConnection::can_register(uint64_t bytes) const {
  return check_memlock(bytes, fmt::format("{} of guest memory", format_bytes(bytes)));
}

Result<uint32_t> RdmaConnection::lkey_for(const std::byte* p, size_t len) const {
  std::lock_guard lock(mr_mu_);
  auto after = std::upper_bound(guest_mrs_.begin(), guest_mrs_.end(), p,
                                [](const std::byte* q, const MemoryRegion& m) {
                                  return std::less<const void*>()(q, m->addr);
                                });
  if (after != guest_mrs_.begin()) {
    const auto& mr = *std::prev(after);
    auto* base = static_cast<const std::byte*>(mr->addr);
    if (p + len <= base + mr->length) return mr->lkey;
  }
  return Status(ErrorCode::kInvalidArgument,
                "one-sided write or read with local memory not registered on this connection");
}

Status RdmaConnection::seal_payloads() {
  std::vector<const SecureSession*> sessions;
  for (auto& q : queues_) sessions.push_back(q->session());
  RS_ASSIGN_OR_RETURN(sealed_, SealedQueues::create(sessions));
  caps_.zero_copy_write = false;
  caps_.remote_read = false;
  caps_.max_message = RdmaQueue::kMaxMessage - PayloadSealer::kOverhead;
  description_.pop_back();  // the closing parenthesis
  description_ += ", payloads sealed: AES-256-GCM)";
  return Status::ok();
}

Status RdmaConnection::post_send(uint32_t queue, std::span<const ConstBuffer> segments) {
  RS_RETURN_IF_ERROR(check(queue));
  if (!sealed_) return queues_[queue]->post_message(segments);
  RS_ASSIGN_OR_RETURN(ConstBuffer sealed, sealed_->seal(queue, segments));
  Status s = queues_[queue]->post_message(std::span(&sealed, 1));
  if (s.code() == ErrorCode::kWouldBlock) sealed_->withdraw(queue);
  return s;
}

Status RdmaConnection::post_write(uint32_t queue, std::span<const RemoteWrite> writes) {
  RS_RETURN_IF_ERROR(check(queue));
  // Why 64: a batch's worth of page runs; the caller splits larger sets.
  uint32_t lkeys[64];
  if (writes.size() > std::size(lkeys))
    return Status(ErrorCode::kInvalidArgument, "more than 64 remote writes in one call");
  for (size_t i = 0; i < writes.size(); ++i) {
    RS_ASSIGN_OR_RETURN(lkeys[i], lkey_for(writes[i].local, writes[i].length));
  }
  return queues_[queue]->post_writes(writes, std::span<const uint32_t>(lkeys, writes.size()));
}

Status RdmaConnection::read(uint32_t queue, std::span<const RemoteRead> reads, Millis timeout) {
  RS_RETURN_IF_ERROR(check(queue));
  if (!caps_.remote_read) return no_remote_reads(transport_name());
  std::vector<PullRead> pulls(reads.size());
  for (size_t i = 0; i < reads.size(); ++i) {
    const RemoteRead& r = reads[i];
    if (r.length > kMaxMergedRead)
      return Status(
          ErrorCode::kInvalidArgument,
          fmt::format("a read of {} bytes; at most {} at once", r.length, kMaxMergedRead));
    RS_ASSIGN_OR_RETURN(uint32_t lkey, lkey_for(r.local, r.length));
    pulls[i] = {r.local, lkey, r.remote_address, r.rkey, static_cast<uint32_t>(r.length)};
  }
  return queues_[queue]->read(pulls, timeout);
}

Status RdmaConnection::wait_writable(uint32_t queue, Millis timeout) {
  RS_RETURN_IF_ERROR(check(queue));
  return queues_[queue]->wait_writable(timeout);
}

Status RdmaConnection::flush(uint32_t queue, Millis timeout) {
  RS_RETURN_IF_ERROR(check(queue));
  return queues_[queue]->flush(timeout);
}

Result<size_t> RdmaConnection::poll(uint32_t queue, std::span<ConstBuffer> out, Millis timeout) {
  RS_RETURN_IF_ERROR(check(queue));
  RS_ASSIGN_OR_RETURN(size_t n, queues_[queue]->poll(out, timeout));
  if (sealed_ && n > 0) {
    if (Status s = sealed_->open(queue, out.first(n)); !s) {
      close();  // the peer, or someone on the path, sent what the keys do not open
      return s;
    }
  }
  return n;
}

}  // namespace ramshift::transport::rdma
