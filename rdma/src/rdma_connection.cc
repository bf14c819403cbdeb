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
                               std::string description, bool queue_keys, std::string no_windows)
    : channel_(std::move(channel)),
      pd_(std::move(pd)),
      queues_(std::move(queues)),
      windows_(queue_keys && no_windows.empty()),
      no_windows_(std::move(no_windows)),
      description_(std::move(description)) {
  caps_.zero_copy_write = true;
  caps_.remote_read = true;
  caps_.keys_per_queue = queue_keys;
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
  {
    // Every window's key dies here, before the queue pairs they were bound on.
    std::lock_guard lock(mr_mu_);
    for (auto& g : guest_mrs_) g.windows.clear();
  }
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
  return register_chunks(memory, access, false);
}

Result<MemoryKey> RdmaConnection::register_memory_per_queue(std::span<std::byte> memory,
                                                            MemoryAccess access) {
  const bool remote = access == MemoryAccess::kRemoteWrite || access == MemoryAccess::kRemoteRead;
  if (remote && caps_.keys_per_queue) {
    std::call_once(keys_said_, [this] {
      if (windows_)
        log::info(
            "rdma: the peer's keys are memory windows, one per queue, each bound to its "
            "queue pair and invalidated with the registration");
      else
        log::info(
            "rdma: {}: the peer's keys are the memory regions', valid on every queue of this "
            "connection until they are deregistered",
            no_windows_);
    });
  }
  RS_ASSIGN_OR_RETURN(MemoryKey key, register_chunks(memory, access, remote && windows_));
  if (key.queue_rkeys.empty()) {  // the region's key serves every queue
    key.queues = queue_count();
    for (uint32_t rkey : key.rkeys) key.queue_rkeys.insert(key.queue_rkeys.end(), key.queues, rkey);
  }
  return key;
}

Result<MemoryKey> RdmaConnection::register_chunks(std::span<std::byte> memory, MemoryAccess access,
                                                  bool windows) {
  const std::string what = fmt::format("{} of guest memory", format_bytes(memory.size()));
  RS_RETURN_IF_ERROR(check_memlock(memory.size(), what));
  // The source only reads its guest memory (which may be a read-only file mapping); only
  // the destination lets the peer write, and only for this connection's lifetime. The peer
  // reads the source's memory only while post-copy runs, with the guest paused for good:
  // REMOTE_READ without LOCAL_WRITE pins it read-only, which is right for memory that no
  // longer changes (an untouched page pinned as the zero page stays zero). With windows the
  // region itself grants no remote access (MW_BIND instead): only the windows do.
  int flags = 0;
  unsigned window_access = 0;
  switch (access) {
    case MemoryAccess::kLocal:
      break;
    case MemoryAccess::kRemoteWrite:
      flags = IBV_ACCESS_LOCAL_WRITE | (windows ? IBV_ACCESS_MW_BIND : IBV_ACCESS_REMOTE_WRITE);
      window_access = IBV_ACCESS_REMOTE_WRITE;
      break;
    case MemoryAccess::kRemoteRead:
      if (!caps_.remote_read)
        return Status(ErrorCode::kInvalidArgument,
                      "rdma: no one-sided reads on a connection with --encrypt (they would "
                      "carry guest memory in clear)");
      flags = windows ? IBV_ACCESS_MW_BIND : IBV_ACCESS_REMOTE_READ;
      window_access = IBV_ACCESS_REMOTE_READ;
      break;
    case MemoryAccess::kReadTarget:
      flags = IBV_ACCESS_LOCAL_WRITE;
      break;
  }
  const uint64_t chunk = chunk_size_for(memory.size());
  const size_t chunks = chunk == 0 ? 0 : (memory.size() + chunk - 1) / chunk;
  std::vector<GuestRegistration> regs(chunks);
  std::vector<int> errs(chunks, 0);
  auto reg = [&](size_t i) {
    size_t off = i * chunk;
    size_t len = std::min<uint64_t>(chunk, memory.size() - off);
    regs[i].mr.reset(ibv_reg_mr(pd_.get(), memory.data() + off, len, flags));
    if (!regs[i].mr) errs[i] = errno;
  };
  if (chunks <= 1) {
    if (chunks == 1) reg(0);
  } else {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < chunks; ++i) threads.emplace_back(reg, i);
    for (auto& t : threads) t.join();
  }
  for (size_t i = 0; i < chunks; ++i)
    if (!regs[i].mr) return registration_error(errs[i], memory.size(), what);
  MemoryKey key;
  key.address = reinterpret_cast<uint64_t>(memory.data());
  key.length = memory.size();
  key.chunk_bytes = chunks > 1 ? chunk : 0;
  if (windows) {
    RS_RETURN_IF_ERROR(bind_windows(regs, window_access, key));
  } else {
    for (auto& g : regs) key.rkeys.push_back(g.rkey = g.mr->rkey);
  }
  std::lock_guard lock(mr_mu_);
  // Kept sorted by address: lkey_for() searches it for every write, and a large guest
  // registered piece by piece holds thousands.
  for (auto& g : regs) {
    auto at = std::upper_bound(guest_mrs_.begin(), guest_mrs_.end(), g.mr->addr,
                               [](void* addr, const GuestRegistration& m) {
                                 return std::less<void*>()(addr, m.mr->addr);
                               });
    guest_mrs_.insert(at, std::move(g));
  }
  return key;
}

// One type-2 window per chunk and queue, bound on that queue (all of a queue's binds in one
// wait); `key` gets the keys chunk by chunk, queue 0's as the chunk's plain rkey.
Status RdmaConnection::bind_windows(std::vector<GuestRegistration>& regs, unsigned access,
                                    MemoryKey& key) {
  const uint32_t queues = queue_count();
  key.queues = queues;
  key.queue_rkeys.resize(regs.size() * queues);
  std::vector<std::vector<WindowBind>> binds(queues);
  for (size_t c = 0; c < regs.size(); ++c) {
    for (uint32_t q = 0; q < queues; ++q) {
      MemoryWindow mw;
      auto bind = new_window(pd_.get(), regs[c].mr.get(), access, mw);
      if (!bind)
        return bind.status().with_context(fmt::format("a window for queue {} of chunk {}", q, c));
      binds[q].push_back(*bind);
      key.queue_rkeys[c * queues + q] = bind->rkey;
      regs[c].windows.push_back(std::move(mw));
    }
    key.rkeys.push_back(regs[c].rkey = key.queue_rkeys[c * queues]);
  }
  // Why 10 s: a bind is local work for the device; only a queue pair already failing (its
  // error completes the wait sooner) takes long.
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::milliseconds(10000);
  std::vector<uint64_t> targets(queues);
  const size_t step = queues_[0]->max_waited();
  for (size_t at = 0; at < regs.size(); at += step) {
    const size_t n = std::min(regs.size() - at, step);
    // Every queue's binds are posted before any is waited for: they run side by side.
    for (uint32_t q = 0; q < queues; ++q) {
      RS_ASSIGN_OR_RETURN(targets[q],
                          queues_[q]->post_binds(std::span(binds[q]).subspan(at, n), deadline));
    }
    for (uint32_t q = 0; q < queues; ++q)
      RS_RETURN_IF_ERROR(queues_[q]
                             ->wait_posted(targets[q], deadline, "memory window bind")
                             .with_context("binding memory windows"));
  }
  log::debug(
      "rdma: {} memory window(s) bound in {:.2f} ms", regs.size() * queues,
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return Status::ok();
}

Status RdmaConnection::release_memory(const MemoryKey& key) {
  std::vector<GuestRegistration> gone;
  {
    std::lock_guard lock(mr_mu_);
    for (uint32_t rkey : key.rkeys) {
      auto it = std::find_if(guest_mrs_.begin(), guest_mrs_.end(), [&](const GuestRegistration& g) {
        const auto a = reinterpret_cast<uint64_t>(g.mr->addr);
        return g.rkey == rkey && a >= key.address && a < key.address + key.length;
      });
      if (it == guest_mrs_.end()) continue;
      gone.push_back(std::move(*it));
      guest_mrs_.erase(it);
    }
  }
  if (gone.empty() && !key.rkeys.empty())
    return Status(ErrorCode::kNotFound, "rdma: no memory registered under those keys");
  // Deregistered here, outside the lock; the keys are invalid from then on (the windows'
  // first: a bound window keeps its region registered).
  for (auto& g : gone) {
    g.windows.clear();
    if (int rc = ibv_dereg_mr(g.mr.release()); rc != 0)
      return errno_status(ErrorCode::kIo, "ibv_dereg_mr", rc);
  }
  return Status::ok();
}

Status RdmaConnection::can_register(uint64_t bytes) const {
  return check_memlock(bytes, fmt::format("{} of guest memory", format_bytes(bytes)));
}

Result<uint32_t> RdmaConnection::lkey_for(const std::byte* p, size_t len) const {
  std::lock_guard lock(mr_mu_);
  auto after = std::upper_bound(guest_mrs_.begin(), guest_mrs_.end(), p,
                                [](const std::byte* q, const GuestRegistration& m) {
                                  return std::less<const void*>()(q, m.mr->addr);
                                });
  if (after != guest_mrs_.begin()) {
    const auto& mr = std::prev(after)->mr;
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
