// The verbs side of one READ-pull connection (page_pull.h): its protection domain and
// registrations, its queue pair's CQ, the authenticated set-up, and the few two-sided messages
// the connection carries after it (the source's KEYs, the destination's DONE).
//
// Messages after the set-up (little-endian, each in one kPullMessageBytes slot):
//   KEY  (source -> destination, 24 B): u32 kPullKeyMagic, u32 key, u64 address, u64 length:
//        READs of [address, address + length) through this connection use `key`
//   DONE (destination -> source, 4 B): u32 kPullDoneMagic: no READ follows
// Both sides post kPullMessageSlots receives for them before the queue pair connects, behind
// the set-up's kAuthSlots (with security); the set-up ends with both sides padded to exactly
// kAuthSlots messages (AuthPipe::finish), so the first message lands in the first of them.
// A slot is posted again as soon as its message was taken.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "auth_pipe.h"
#include "memory_windows.h"
#include "page_pull.h"
#include "ramshift/base/mapped_memory.h"
#include "verbs_handles.h"

namespace ramshift::transport::rdma {

inline constexpr uint32_t kPullKeyMagic = 0x4b505352;   // "RSPK"
inline constexpr uint32_t kPullDoneMagic = 0x44505352;  // "RSPD"
inline constexpr size_t kPullKeyBytes = 24;
// Why 8: a source sends one KEY per mapping it exposes (guest RAM, and at most a few ROM or
// video RAM blocks) and the destination one DONE; every slot is posted again as soon as it
// is read, so 8 leave room for a burst without the sender ever meeting an empty queue.
inline constexpr uint32_t kPullMessageSlots = 8;
inline constexpr uint32_t kPullMessageBytes = 64;

struct PullKey {
  uint64_t address = 0;
  uint64_t length = 0;
  uint32_t key = 0;
};
void encode_key(std::byte* out, const PullKey& k);
// nullopt when `in` is not a KEY.
std::optional<PullKey> decode_key(std::span<const std::byte> in);
bool is_done(std::span<const std::byte> in);

// A PD and the memory registered in it for pulls; the MRs go before the PD.
class Registrations {
 public:
  static Result<std::shared_ptr<Registrations>> create(ibv_context* ctx);
  // The destination's: one per device for the process, shared by its connections and gone
  // with the last of them. Only local access is ever granted in it (READ targets, the
  // set-up's buffers), so sharing it opens nothing to any peer, whereas a PD per connection
  // would pin the guest memory once per channel (and need channels x its size of memlock).
  static Result<std::shared_ptr<Registrations>> shared_local(ibv_context* ctx);

  explicit Registrations(SharedPd pd) : pd_(std::move(pd)) {}
  ibv_pd* pd() const { return pd_.get(); }

  // The MR covering [p, p+len): registered on first use with `access` (then `added`, when
  // given, says what that cost).
  Result<ibv_mr*> ensure(const std::byte* p, size_t len, int access, const char* what,
                         PullStats* added = nullptr);
  // Deregisters every region (their keys open nothing from then on); the PD stays.
  void release_all();
  PullStats stats() const;

 private:
  SharedPd pd_;  // declared first: destroyed after the MRs
  mutable std::mutex mu_;
  std::vector<MemoryRegion> mrs_;
  PullStats stats_;
};

// One connection's verbs objects: its registrations and their PD (the source's its own; the
// destination's shared, local access only), CQ, queue pair (on the rdma_cm id, which its
// owner destroys first), the set-up's buffers and session, and the message slots. Members are
// destroyed bottom-up: the session before its pipe, the buffers' MRs before the buffers, the
// CQ before its channel, the registrations (MRs, then the PD) last.
// One thread at a time.
class Queue {
 public:
  using Clock = std::chrono::steady_clock;
  static Result<std::unique_ptr<Queue>> create(rdma_cm_id* id, bool authenticated,
                                               std::shared_ptr<Registrations> regs);

  // Runs the TLS handshake and the verdict on the connected queue pair `qp` (the client
  // names `host`, the address it dialled), then pads the set-up to kAuthSlots messages each
  // way. Every SEND of the set-up has completed when this returns.
  Status authenticate(ChannelSecurity& security, PeerRole role, const std::string& host,
                      const std::string& peer, std::function<Status()> peer_left);
  // ", TLSv1.3 TLS_AES_256_GCM_SHA384, x509, peer CN=..." once authenticated, else "".
  std::string session_text() const;

  // Posted on the queue pair, signaled; wait with poll_until(sends_done).
  Status post_message(std::span<const std::byte> message);
  Status post_bind(const WindowBind& bind);
  // `reads` as one chain, the last signaled.
  Status post_reads(std::span<const PullRead> reads);
  // Every signaled request posted so far has completed.
  bool sends_done() const { return signaled_done_ == signaled_posted_; }
  // Processes completions until `ready()` or `deadline` (kTimeout naming `what`); a failed
  // request fails it (kIo naming the request), and so does the connection's end (kDisconnected).
  Status poll_until(const std::function<bool()>& ready, Clock::time_point deadline,
                    const std::string& what);
  // The messages received so far, in order; taken.
  std::vector<std::vector<std::byte>> take_messages();

  Registrations& registrations() { return *regs_; }

 private:
  Status drain();
  Status on_completion(const ibv_wc& wc);
  Status post_message_receive(uint32_t slot);

  ibv_qp* qp_ = nullptr;  // the rdma_cm id's, created by create()
  std::shared_ptr<Registrations> regs_;
  CompletionChannel comp_;
  CompletionQueue cq_;
  MappedMemory auth_buf_;
  MemoryRegion auth_mr_;
  // kPullMessageSlots receive slots, then as many send slots.
  MappedMemory msg_buf_;
  MemoryRegion msg_mr_;
  std::unique_ptr<AuthPipe> pipe_;
  std::unique_ptr<SecureSession> session_;
  uint64_t signaled_posted_ = 0;
  uint64_t signaled_done_ = 0;
  uint64_t messages_sent_ = 0;
  std::vector<std::vector<std::byte>> inbox_;
};

}  // namespace ramshift::transport::rdma
