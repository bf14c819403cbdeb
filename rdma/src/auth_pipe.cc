// The authenticated set-up's message pipe and verdict (auth_pipe.h).
#include "auth_pipe.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "ramshift/base/byte_order.h"
#include "signaled_send.h"

namespace ramshift::transport::rdma {
namespace {

constexpr size_t kMaxRefusalText = 512;

std::string printable(std::span<const std::byte> text) {
  std::string out;
  for (std::byte b : text.first(std::min(text.size(), kMaxRefusalText))) {
    const char c = static_cast<char>(b);
    out += (c >= 0x20 && c < 0x7f) ? c : '?';  // the peer's words, printed, never obeyed
  }
  return out;
}

Status verdict_to(const ChannelSecurity& security, SecureSession& session,
                  std::span<const std::byte> payload) {
  if (Status a = security.authorize(session); !a) {
    std::vector<std::byte> refusal(4 + std::min(a.message().size(), kMaxRefusalText));
    store_le<uint32_t>(refusal.data(), kAuthRefused);
    std::memcpy(refusal.data() + 4, a.message().data(), refusal.size() - 4);
    (void)session.send(refusal);
    return a;
  }
  std::vector<std::byte> verdict(4 + payload.size());
  store_le<uint32_t>(verdict.data(), kAuthAccepted);
  std::copy(payload.begin(), payload.end(), verdict.begin() + 4);
  return session.send(verdict);
}

}  // namespace

Status AuthPipe::send(std::span<const std::byte> message) {
  if (message.size() > kAuthSlotBytes)
    return Status(ErrorCode::kInternal, "rdma: set-up message larger than its slot");
  if (sent_ == kAuthSlots)
    return Status(ErrorCode::kProtocol,
                  fmt::format("rdma queue {}: the authenticated set-up needs more than {} "
                              "messages (a certificate chain over {} KiB?)",
                              queue_, kAuthSlots, kAuthSlots * kAuthSlotBytes / 1024));
  std::byte* slot = buffer_.data() + (kAuthSlots + sent_) * size_t{kAuthSlotBytes};
  std::copy(message.begin(), message.end(), slot);
  if (int rc = post_signaled_send(qp_, kAuthSendId | sent_, {slot, message.size()}, lkey_); rc != 0)
    return errno_status(ErrorCode::kIo, "ibv_post_send (authentication)", rc);
  ++sent_;
  return Status::ok();
}

Result<std::vector<std::byte>> AuthPipe::receive(Clock::time_point deadline) {
  while (arrived_.empty()) RS_RETURN_IF_ERROR(poll_once(deadline));
  const auto [slot, len] = arrived_.front();
  arrived_.pop_front();
  const std::byte* p = buffer_.data() + size_t{slot} * kAuthSlotBytes;
  return std::vector<std::byte>(p, p + len);
}

Status AuthPipe::finish(Clock::time_point deadline) {
  while (sent_ < kAuthSlots) RS_RETURN_IF_ERROR(send({}));
  while (received_ < kAuthSlots || !arrived_.empty()) {
    RS_ASSIGN_OR_RETURN(auto m, receive(deadline));
    if (!m.empty())
      return Status(ErrorCode::kProtocol,
                    fmt::format("rdma queue {}: the peer sent more after its hello", queue_));
  }
  return sends_complete(deadline);
}

Status AuthPipe::sends_complete(Clock::time_point deadline) {
  while (sends_done_ < sent_) RS_RETURN_IF_ERROR(poll_once(deadline));
  return Status::ok();
}

Status AuthPipe::poll_once(Clock::time_point deadline) {
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

Status AuthPipe::on_completion(const ibv_wc& wc) {
  if (others_ && (wc.wr_id & (1ull << 61)) == 0) return others_(wc);
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

Status post_auth_receives(ibv_qp* qp, std::span<std::byte> buffer, uint32_t lkey) {
  ibv_sge sges[kAuthSlots];
  ibv_recv_wr wrs[kAuthSlots];
  for (uint32_t i = 0; i < kAuthSlots; ++i) {
    sges[i] = {reinterpret_cast<uint64_t>(buffer.data() + size_t{i} * kAuthSlotBytes),
               kAuthSlotBytes, lkey};
    wrs[i] = ibv_recv_wr{};
    wrs[i].wr_id = kAuthRecvId | i;
    wrs[i].sg_list = &sges[i];
    wrs[i].num_sge = 1;
    wrs[i].next = i + 1 < kAuthSlots ? &wrs[i + 1] : nullptr;
  }
  ibv_recv_wr* bad = nullptr;
  if (int rc = ibv_post_recv(qp, wrs, &bad); rc != 0)
    return errno_status(ErrorCode::kIo, "ibv_post_recv (authentication)", rc);
  return Status::ok();
}

void AuthPipe::linger(Clock::time_point deadline) {
  (void)sends_complete(std::min(deadline, Clock::now() + std::chrono::seconds(1)));
}

Result<std::unique_ptr<SecureSession>> AuthPipe::handshake(ChannelSecurity& security, PeerRole role,
                                                           const std::string& host,
                                                           Clock::time_point deadline) {
  auto session = security.handshake(*this, role, host, deadline);
  if (!session) linger(deadline);
  return session;
}

Status AuthPipe::send_verdict(const ChannelSecurity& security, SecureSession& session,
                              std::span<const std::byte> payload, Clock::time_point deadline) {
  Status v = verdict_to(security, session, payload);
  if (!v) linger(deadline);
  return v;
}

Result<std::vector<std::byte>> receive_verdict(SecureSession& session, const std::string& peer,
                                               std::chrono::steady_clock::time_point deadline) {
  auto verdict = session.receive(deadline);
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
  if (code != kAuthAccepted)
    return Status(
        ErrorCode::kProtocol,
        fmt::format("{} answered the authenticated set-up with {} bytes", peer, verdict->size()));
  return std::vector<std::byte>(verdict->begin() + 4, verdict->end());
}

}  // namespace ramshift::transport::rdma
