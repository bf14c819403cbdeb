// RdmaQueue's authentication before its hello (queue_auth.h says why and how).
#include "queue_auth.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <thread>

#include "host_limits.h"
#include "ramshift/base/byte_order.h"
#include "ramshift/base/log.h"
#include "rdma_queue.h"

namespace ramshift::transport::rdma {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxRefusalText = 512;

// The set-up's SEND/RECV messages on a queue whose poller has not started: this pipe polls
// the queue's CQ itself, and every completion on it before the hello is one of its own.
class AuthPipe final : public MessagePipe {
 public:
  AuthPipe(ibv_qp* qp, ibv_cq* cq, std::span<std::byte> buffer, uint32_t lkey, uint32_t queue,
           std::function<Status()> peer_left)
      : qp_(qp),
        cq_(cq),
        buffer_(buffer),
        lkey_(lkey),
        queue_(queue),
        peer_left_(std::move(peer_left)) {}

  size_t max_message() const override { return kAuthSlotBytes; }

  Status send(std::span<const std::byte> message) override {
    if (message.size() > kAuthSlotBytes)
      return Status(ErrorCode::kInternal, "rdma: set-up message larger than its slot");
    if (sent_ == kAuthSlots)
      return Status(ErrorCode::kProtocol,
                    fmt::format("rdma queue {}: the authenticated set-up needs more than {} "
                                "messages (a certificate chain over {} KiB?)",
                                queue_, kAuthSlots, kAuthSlots * kAuthSlotBytes / 1024));
    std::byte* slot = buffer_.data() + (kAuthSlots + sent_) * size_t{kAuthSlotBytes};
    std::copy(message.begin(), message.end(), slot);
    ibv_sge sge{reinterpret_cast<uint64_t>(slot), static_cast<uint32_t>(message.size()), lkey_};
    ibv_send_wr wr{};
    wr.wr_id = kAuthSendId | sent_;
    wr.sg_list = message.empty() ? nullptr : &sge;
    wr.num_sge = message.empty() ? 0 : 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED;
    ibv_send_wr* bad = nullptr;
    if (int rc = ibv_post_send(qp_, &wr, &bad); rc != 0)
      return errno_status(ErrorCode::kIo, "ibv_post_send (authentication)", rc);
    ++sent_;
    return Status::ok();
  }

  Result<std::vector<std::byte>> receive(Clock::time_point deadline) override {
    while (arrived_.empty()) RS_RETURN_IF_ERROR(poll_once(deadline));
    const auto [slot, len] = arrived_.front();
    arrived_.pop_front();
    const std::byte* p = buffer_.data() + size_t{slot} * kAuthSlotBytes;
    return std::vector<std::byte>(p, p + len);
  }

  // Empty SENDs up to kAuthSlots, the peer's likewise (anything else is refused), and every
  // send complete: after this, the queue's next receive is its hello's, and no completion of
  // ours is left for the poller.
  Status finish(Clock::time_point deadline) {
    while (sent_ < kAuthSlots) RS_RETURN_IF_ERROR(send({}));
    while (received_ < kAuthSlots || !arrived_.empty()) {
      RS_ASSIGN_OR_RETURN(auto m, receive(deadline));
      if (!m.empty())
        return Status(ErrorCode::kProtocol,
                      fmt::format("rdma queue {}: the peer sent more after its hello", queue_));
    }
    return sends_complete(deadline);
  }

  // Every SEND posted so far acknowledged by the peer's queue: in its receive buffers.
  Status sends_complete(Clock::time_point deadline) {
    while (sends_done_ < sent_) RS_RETURN_IF_ERROR(poll_once(deadline));
    return Status::ok();
  }

 private:
  Status poll_once(Clock::time_point deadline) {
    ibv_wc wcs[8];
    const int n = ibv_poll_cq(cq_, 8, wcs);
    if (n < 0) return errno_status(ErrorCode::kIo, "ibv_poll_cq", errno);
    for (int i = 0; i < n; ++i) RS_RETURN_IF_ERROR(on_completion(wcs[i]));
    if (n > 0) return Status::ok();
    if (Clock::now() > deadline)
      return Status(
          ErrorCode::kTimeout,
          fmt::format("rdma queue {}: the peer did not finish authenticating in time", queue_));
    if (peer_left_) RS_RETURN_IF_ERROR(peer_left_());
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    return Status::ok();
  }

  Status on_completion(const ibv_wc& wc) {
    const bool is_receive = (wc.wr_id & (1ull << 63)) != 0;
    if (wc.status == IBV_WC_WR_FLUSH_ERR)
      return Status(ErrorCode::kDisconnected,
                    fmt::format("rdma queue {}: the connection closed during authentication "
                                "(the peer refused or left)",
                                queue_));
    if (wc.status != IBV_WC_SUCCESS)
      return Status(ErrorCode::kIo,
                    fmt::format("rdma queue {}: a {} during authentication failed: {}", queue_,
                                is_receive ? "receive" : "send", ibv_wc_status_str(wc.status)));
    if (!is_receive) {
      ++sends_done_;
      return Status::ok();
    }
    // Receives complete in posting order: the n-th message is in slot n.
    if (wc.wr_id != (kAuthRecvId | received_) || wc.opcode != IBV_WC_RECV)
      return Status(ErrorCode::kProtocol,
                    fmt::format("rdma queue {}: the peer wrote into this queue before it "
                                "authenticated",
                                queue_));
    arrived_.emplace_back(received_++, wc.byte_len);
    return Status::ok();
  }

  ibv_qp* qp_;
  ibv_cq* cq_;
  std::span<std::byte> buffer_;
  uint32_t lkey_;
  uint32_t queue_;
  std::function<Status()> peer_left_;
  uint32_t sent_ = 0;
  uint32_t sends_done_ = 0;
  uint32_t received_ = 0;
  std::deque<std::pair<uint32_t, uint32_t>> arrived_;  // slot, length
};

std::string printable(std::span<const std::byte> text) {
  std::string out;
  for (std::byte b : text.first(std::min(text.size(), kMaxRefusalText))) {
    const char c = static_cast<char>(b);
    out += (c >= 0x20 && c < 0x7f) ? c : '?';  // the peer's words, printed, never obeyed
  }
  return out;
}

}  // namespace

Status RdmaQueue::post_auth_receives() {
  RS_RETURN_IF_ERROR(check_memlock(kAuthBufferBytes, "the transport's authentication buffers"));
  RS_ASSIGN_OR_RETURN(auth_buf_, MappedMemory::anonymous(kAuthBufferBytes));
  auth_mr_.reset(
      ibv_reg_mr(pd_.get(), auth_buf_.bytes().data(), kAuthBufferBytes, IBV_ACCESS_LOCAL_WRITE));
  if (!auth_mr_)
    return registration_error(errno, kAuthBufferBytes, "the transport's authentication buffers");
  ibv_sge sges[kAuthSlots];
  ibv_recv_wr wrs[kAuthSlots];
  for (uint32_t i = 0; i < kAuthSlots; ++i) {
    sges[i] = {reinterpret_cast<uint64_t>(auth_buf_.bytes().data() + size_t{i} * kAuthSlotBytes),
               kAuthSlotBytes, auth_mr_->lkey};
    wrs[i] = ibv_recv_wr{};
    wrs[i].wr_id = kAuthRecvId | i;
    wrs[i].sg_list = &sges[i];
    wrs[i].num_sge = 1;
    wrs[i].next = i + 1 < kAuthSlots ? &wrs[i + 1] : nullptr;
  }
  ibv_recv_wr* bad = nullptr;
  if (int rc = ibv_post_recv(id_->qp, wrs, &bad); rc != 0)
    return errno_status(ErrorCode::kIo, "ibv_post_recv (authentication)", rc);
  return Status::ok();
}

Status RdmaQueue::authenticate(ChannelSecurity& security, PeerRole role, const std::string& host,
                               const std::string& peer, bool encrypt, Clock::time_point deadline,
                               const std::function<Status()>& peer_left) {
  if (!auth_mr_)
    return Status(ErrorCode::kInternal, "rdma: queue created without authentication buffers");
  // Kept with the queue: the session refers to it.
  auto owned = std::make_unique<AuthPipe>(id_->qp, cq_.get(), auth_buf_.bytes(), auth_mr_->lkey,
                                          index_, peer_left);
  AuthPipe* pipe = owned.get();
  auth_pipe_ = std::move(owned);
  // A refused handshake ends with an alert on its way: it must reach the peer (which then
  // says why) before this queue is destroyed.
  const auto linger = [&] {
    (void)pipe->sends_complete(std::min(deadline, Clock::now() + std::chrono::seconds(1)));
  };
  auto session = security.handshake(*pipe, role, host, deadline);
  if (!session) {
    linger();
    return session.status();
  }
  session_ = std::move(session).value();
  // Our hello and whether we seal payloads (--encrypt), which both sides must agree on.
  std::byte own[kHelloBytes + 1];
  encode_own_hello(std::span(own, kHelloBytes));
  own[kHelloBytes] = std::byte{encrypt ? uint8_t{1} : uint8_t{0}};
  const auto agree = [&](std::byte theirs) -> Status {
    const bool peer_encrypts = theirs != std::byte{0};
    if (peer_encrypts == encrypt) return Status::ok();
    return Status(
        ErrorCode::kMismatch,
        fmt::format("{} runs {} --encrypt and this side {}: give both sides the same", peer,
                    peer_encrypts ? "with" : "without", encrypt ? "does" : "does not"));
  };
  if (role == PeerRole::kServer) {
    if (Status a = security.authorize(*session_); !a) {
      std::vector<std::byte> refusal(4 + std::min(a.message().size(), kMaxRefusalText));
      store_le<uint32_t>(refusal.data(), kAuthRefused);
      std::memcpy(refusal.data() + 4, a.message().data(), refusal.size() - 4);
      (void)session_->send(refusal);
      linger();
      return a;
    }
    std::byte verdict[4 + sizeof own];
    store_le<uint32_t>(verdict, kAuthAccepted);
    std::memcpy(verdict + 4, own, sizeof own);
    RS_RETURN_IF_ERROR(session_->send(verdict));
    RS_ASSIGN_OR_RETURN(expected_peer_hello_, session_->receive(deadline));
    if (expected_peer_hello_.size() == sizeof own) {
      RS_RETURN_IF_ERROR(agree(expected_peer_hello_.back()));
      expected_peer_hello_.pop_back();
    }
  } else {
    auto verdict = session_->receive(deadline);
    if (!verdict) {
      const bool alert = verdict.status().message().find("alert") != std::string::npos;
      return Status(ErrorCode::kMismatch,
                    fmt::format("{} {} after the TLS handshake: {} (its log says why)", peer,
                                alert ? "refused this side's credentials"
                                      : "closed the connection (it refused this side's "
                                        "credentials, or left)",
                                verdict.status().message()));
    }
    const uint32_t code = verdict->size() >= 4 ? load_le<uint32_t>(verdict->data()) : 0;
    if (code == kAuthRefused)
      return Status(ErrorCode::kMismatch, fmt::format("{} refused this connection: {}", peer,
                                                      printable(std::span(*verdict).subspan(4))));
    if (code != kAuthAccepted || verdict->size() != 4 + sizeof own)
      return Status(
          ErrorCode::kProtocol,
          fmt::format("{} answered the authenticated set-up with {} bytes", peer, verdict->size()));
    expected_peer_hello_.assign(verdict->begin() + 4, verdict->end() - 1);
    RS_RETURN_IF_ERROR(session_->send(own));
    RS_RETURN_IF_ERROR(agree(verdict->back()));
  }
  if (expected_peer_hello_.size() != kHelloBytes)
    return Status(ErrorCode::kProtocol,
                  fmt::format("rdma queue {}: the peer's authenticated hello has {} bytes", index_,
                              expected_peer_hello_.size()));
  return pipe->finish(deadline);
}

}  // namespace ramshift::transport::rdma
