// A TLS 1.3 session over a transport::MessagePipe (rdma's SEND/RECV before its rings exist):
// the handshake and the records go through memory BIOs, and every message OpenSSL writes
// travels as one or more pipe messages.
#pragma once

#include <string>
#include <vector>

#include "openssl_util.h"
#include "ramshift/transport/channel_security.h"

namespace ramshift::security {

class TlsSession final : public transport::SecureSession {
 public:
  // `ssl` has finished its handshake over `pipe`, which must outlive every send() and
  // receive() (export_key() does not use it).
  TlsSession(SslPtr ssl, transport::MessagePipe& pipe, std::string identity, std::string mode);

  Status send(std::span<const std::byte> message) override;
  Result<std::vector<std::byte>> receive(std::chrono::steady_clock::time_point deadline) override;
  std::string peer_identity() const override { return identity_; }
  std::string describe() const override { return description_; }
  Result<std::vector<std::byte>> export_key(const std::string& label,
                                            std::span<const std::byte> context,
                                            size_t bytes) const override;
  Result<std::unique_ptr<transport::PayloadSealer>> sealer(bool sending,
                                                           uint32_t queue) const override;

  // The largest message send() takes and receive() accepts.
  static constexpr size_t kMaxMessage = 64u << 10;

 private:
  Status read_exact(std::span<std::byte> out, std::chrono::steady_clock::time_point deadline);

  SslPtr ssl_;
  transport::MessagePipe* pipe_;
  std::string identity_;
  std::string description_;
};

// Sends what OpenSSL wrote into `ssl`'s memory BIO down `pipe`, in pipe-sized messages.
Status flush_records(SSL* ssl, transport::MessagePipe& pipe);
// Waits for the peer's next pipe message and hands it to `ssl`'s memory BIO.
Status feed_records(SSL* ssl, transport::MessagePipe& pipe,
                    std::chrono::steady_clock::time_point deadline);

}  // namespace ramshift::security
