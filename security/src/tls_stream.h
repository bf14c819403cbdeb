// A TLS 1.3 channel over one connected socket, after its handshake (transport::SecureStream).
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "openssl_util.h"
#include "ramshift/transport/channel_security.h"

namespace ramshift::security {

class TlsStream final : public transport::SecureStream {
 public:
  // `ssl` has finished its handshake on `fd` (which the caller keeps open for our lifetime).
  TlsStream(SslPtr ssl, std::string identity, std::string mode);

  Status write(std::span<const std::span<const std::byte>> segments) override;
  Status flush_some() override;
  bool has_unsent() const override;
  Result<size_t> read(std::span<std::byte> out) override;
  std::string peer_identity() const override { return identity_; }
  std::string describe() const override { return description_; }

 private:
  Status push_locked();
  Status failure_locked(int ssl_error, const char* what);

  // Why one mutex: an SSL object's record state is shared by both directions, and the
  // transport lets one thread send while another receives on the same queue.
  mutable std::mutex mu_;
  SslPtr ssl_;
  // The message write() took, and how much of it SSL_write has sent. A write that stopped on
  // a full socket must be retried with the same bytes (OpenSSL's rule), so they stay here.
  std::vector<std::byte> out_;
  size_t out_off_ = 0;
  std::string identity_;
  std::string description_;
};

}  // namespace ramshift::security
