// The authenticated set-up of an rdma queue pair before any key is announced (queue_auth.h
// says why and how): TLS 1.3 (security/, through ChannelSecurity) over two-sided SEND/RECV
// into kAuthSlots receives posted ahead of everything else, then the accepting side's verdict
// inside the session. One implementation for the rdma:// queues (queue_auth.cc) and the
// in-process QEMU library's READ pulls (page_pull.cc).
#pragma once

#include <infiniband/verbs.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "queue_auth.h"
#include "ramshift/transport/channel_security.h"

namespace ramshift::transport::rdma {

// The set-up's SEND/RECV messages on a queue pair nothing else polls yet: this pipe polls the
// CQ itself, and every completion on it during the set-up is one of its own. `buffer` holds
// kAuthSlots receive slots then kAuthSlots send slots (kAuthBufferBytes, registered with
// `lkey`, local access only), the receives already posted (post_auth_receives).
class AuthPipe final : public MessagePipe {
 public:
  using Clock = std::chrono::steady_clock;
  AuthPipe(ibv_qp* qp, ibv_cq* cq, std::span<std::byte> buffer, uint32_t lkey, uint32_t queue,
           std::function<Status()> peer_left)
      : qp_(qp),
        cq_(cq),
        buffer_(buffer),
        lkey_(lkey),
        queue_(queue),
        peer_left_(std::move(peer_left)) {}

  size_t max_message() const override { return kAuthSlotBytes; }
  Status send(std::span<const std::byte> message) override;
  Result<std::vector<std::byte>> receive(Clock::time_point deadline) override;
  // Empty SENDs up to kAuthSlots, the peer's likewise (anything else is refused), and every
  // send complete: after this, the queue's next receive is the one after the slots, and no
  // completion of ours is left for whoever polls the CQ next.
  Status finish(Clock::time_point deadline);
  // Every SEND posted so far acknowledged by the peer's queue: in its receive buffers.
  Status sends_complete(Clock::time_point deadline);
  // Completions of work requests that are not the set-up's (their ids lack its bit 61) go to
  // `others` instead of failing the set-up: for a queue pair whose owner posts receives of its
  // own behind the set-up's, where the peer's first message after finish() may complete while
  // this side still polls for its own last set-up completions (page_pull.cc).
  void pass_others_to(std::function<Status(const ibv_wc&)> others) { others_ = std::move(others); }

  // The TLS handshake over this pipe. The accepting side then sends its verdict: send_verdict
  // (below) on the session, by this pipe. Either one refused ends with an alert or the refusal
  // on its way, which must reach the peer (which then says why) before the queue pair is
  // destroyed: both wait for their sends up to 1 s (never past `deadline`) before they fail.
  Result<std::unique_ptr<SecureSession>> handshake(ChannelSecurity& security, PeerRole role,
                                                   const std::string& host,
                                                   Clock::time_point deadline);
  // Accepting side, after the handshake: `security` (--tls-authz) decides whether the proven
  // identity may connect. The peer is told kAuthRefused and the reason (and this returns the
  // refusal), or kAuthAccepted followed by `payload`.
  Status send_verdict(const ChannelSecurity& security, SecureSession& session,
                      std::span<const std::byte> payload, Clock::time_point deadline);

 private:
  void linger(Clock::time_point deadline);
  Status poll_once(Clock::time_point deadline);
  Status on_completion(const ibv_wc& wc);

  ibv_qp* qp_;
  ibv_cq* cq_;
  std::span<std::byte> buffer_;
  uint32_t lkey_;
  uint32_t queue_;
  std::function<Status()> peer_left_;
  std::function<Status(const ibv_wc&)> others_;
  uint32_t sent_ = 0;
  uint32_t sends_done_ = 0;
  uint32_t received_ = 0;
  std::deque<std::pair<uint32_t, uint32_t>> arrived_;  // slot, length
};

// Posts the kAuthSlots receives into `buffer`'s receive slots.
Status post_auth_receives(ibv_qp* qp, std::span<std::byte> buffer, uint32_t lkey);

// Connecting side: the payload of the accepting side's verdict, or kMismatch naming `peer` and
// why it refused (its sentence, or the alert that ended the session).
Result<std::vector<std::byte>> receive_verdict(SecureSession& session, const std::string& peer,
                                               std::chrono::steady_clock::time_point deadline);

}  // namespace ramshift::transport::rdma
