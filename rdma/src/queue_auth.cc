// RdmaQueue's authentication before its hello (queue_auth.h says why and how).
#include "queue_auth.h"

#include <fmt/format.h>

#include <algorithm>

#include "auth_pipe.h"
#include "host_limits.h"
#include "rdma_queue.h"

namespace ramshift::transport::rdma {

using Clock = std::chrono::steady_clock;

Status RdmaQueue::post_auth_receives() {
  RS_RETURN_IF_ERROR(check_memlock(kAuthBufferBytes, "the transport's authentication buffers"));
  RS_ASSIGN_OR_RETURN(auth_buf_, MappedMemory::anonymous(kAuthBufferBytes));
  auth_mr_.reset(
      ibv_reg_mr(pd_.get(), auth_buf_.bytes().data(), kAuthBufferBytes, IBV_ACCESS_LOCAL_WRITE));
  if (!auth_mr_)
    return registration_error(errno, kAuthBufferBytes, "the transport's authentication buffers");
  return rdma::post_auth_receives(id_->qp, auth_buf_.bytes(), auth_mr_->lkey);
}

Status RdmaQueue::authenticate(ChannelSecurity& security, PeerRole role, const std::string& host,
                               const std::string& peer, bool encrypt, Clock::time_point deadline,
                               const std::function<Status()>& peer_left) {
  if (!auth_mr_)
    return Status(ErrorCode::kInternal, "rdma: queue created without authentication buffers");
  RS_RETURN_IF_ERROR(bind_ring_window());  // before the hello, sent inside the session, names it
  // Kept with the queue: the session refers to it.
  auto owned = std::make_unique<AuthPipe>(id_->qp, cq_.get(), auth_buf_.bytes(), auth_mr_->lkey,
                                          index_, peer_left);
  AuthPipe* pipe = owned.get();
  auth_pipe_ = std::move(owned);
  RS_ASSIGN_OR_RETURN(session_, pipe->handshake(security, role, host, deadline));
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
    RS_RETURN_IF_ERROR(pipe->send_verdict(security, *session_, own, deadline));
    RS_ASSIGN_OR_RETURN(expected_peer_hello_, session_->receive(deadline));
    if (expected_peer_hello_.size() == sizeof own) {
      RS_RETURN_IF_ERROR(agree(expected_peer_hello_.back()));
      expected_peer_hello_.pop_back();
    }
  } else {
    RS_ASSIGN_OR_RETURN(auto verdict, receive_verdict(*session_, peer, deadline));
    if (verdict.size() != sizeof own)
      return Status(ErrorCode::kProtocol,
                    fmt::format("{} answered the authenticated set-up with {} bytes", peer,
                                4 + verdict.size()));
    expected_peer_hello_.assign(verdict.begin(), verdict.end() - 1);
    RS_RETURN_IF_ERROR(session_->send(own));
    RS_RETURN_IF_ERROR(agree(verdict.back()));
  }
  if (expected_peer_hello_.size() != kHelloBytes)
    return Status(ErrorCode::kProtocol,
                  fmt::format("rdma queue {}: the peer's authenticated hello has {} bytes", index_,
                              expected_peer_hello_.size()));
  return pipe->finish(deadline);
}

}  // namespace ramshift::transport::rdma
