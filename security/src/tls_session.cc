// TLS over a message pipe: the handshake (TlsChannel's, with the same credentials, checks and
// error sentences as over a socket) and the session that follows it.
#include "tls_session.h"

#include <fmt/format.h>

#include "payload_sealer.h"
#include "ramshift/base/byte_order.h"
#include "tls_channel.h"

namespace ramshift::security {

using Clock = std::chrono::steady_clock;
using transport::PeerRole;

Status flush_records(SSL* ssl, transport::MessagePipe& pipe) {
  BIO* out = SSL_get_wbio(ssl);
  std::vector<std::byte> buf(pipe.max_message());
  while (BIO_ctrl_pending(out) > 0) {
    const int n = BIO_read(out, buf.data(), static_cast<int>(buf.size()));
    if (n <= 0) break;
    RS_RETURN_IF_ERROR(pipe.send(std::span(buf.data(), static_cast<size_t>(n))));
  }
  return Status::ok();
}

Status feed_records(SSL* ssl, transport::MessagePipe& pipe, Clock::time_point deadline) {
  RS_ASSIGN_OR_RETURN(std::vector<std::byte> in, pipe.receive(deadline));
  if (in.empty())
    return Status(ErrorCode::kProtocol, "the peer ended its authenticated set-up too early");
  if (BIO_write(SSL_get_rbio(ssl), in.data(), static_cast<int>(in.size())) !=
      static_cast<int>(in.size()))
    return Status(ErrorCode::kInternal, "TLS: cannot buffer the peer's records");
  return Status::ok();
}

Result<std::unique_ptr<transport::SecureSession>> TlsChannel::handshake(
    transport::MessagePipe& pipe, PeerRole role, const std::string& host,
    Clock::time_point deadline) {
  std::string identity;
  RS_ASSIGN_OR_RETURN(SslPtr ssl, start_session(role, host, &identity));
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (!in || !out) {
    BIO_free(in);
    BIO_free(out);
    return Status(ErrorCode::kInternal, "TLS: cannot allocate memory buffers");
  }
  SSL_set_bio(ssl.get(), in, out);  // the session owns both now
  const std::string with = host.empty() ? "" : " with " + host;
  for (;;) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl.get());
    const int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl.get(), r);
    std::string failure;
    if (r != 1 && err != SSL_ERROR_WANT_READ) failure = handshake_failure(ssl.get(), err, host);
    // Our next flight, or the alert that tells the peer why this side stopped.
    Status sent = flush_records(ssl.get(), pipe);
    if (!failure.empty()) return Status(ErrorCode::kMismatch, failure);
    if (!sent) return Status(sent.code(), fmt::format("TLS handshake{}: {}", with, sent.message()));
    if (r == 1) break;
    if (Status got = feed_records(ssl.get(), pipe, deadline); !got)
      return Status(got.code(), fmt::format("TLS handshake{}: {}", with, got.message()));
  }
  identity = proven_identity(ssl.get(), identity);
  return std::unique_ptr<transport::SecureSession>(
      std::make_unique<TlsSession>(std::move(ssl), pipe, identity, mode()));
}

TlsSession::TlsSession(SslPtr ssl, transport::MessagePipe& pipe, std::string identity,
                       std::string mode)
    : ssl_(std::move(ssl)), pipe_(&pipe), identity_(std::move(identity)) {
  description_ = fmt::format("{} {}, {}", SSL_get_version(ssl_.get()),
                             SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_.get())), mode);
}

// A message is a u32 length (little endian) and its bytes, in as many records as it takes.
Status TlsSession::send(std::span<const std::byte> message) {
  if (message.size() > kMaxMessage)
    return Status(ErrorCode::kInvalidArgument, "TLS: set-up message too long");
  std::vector<std::byte> framed(4 + message.size());
  store_le<uint32_t>(framed.data(), static_cast<uint32_t>(message.size()));
  std::copy(message.begin(), message.end(), framed.begin() + 4);
  size_t done = 0;
  while (done < framed.size()) {
    ERR_clear_error();
    size_t n = 0;
    if (SSL_write_ex(ssl_.get(), framed.data() + done, framed.size() - done, &n) != 1)
      return Status(ErrorCode::kInternal,
                    fmt::format("TLS sending failed: {}", take_openssl_errors()));
    done += n;
  }
  return flush_records(ssl_.get(), *pipe_);
}

Status TlsSession::read_exact(std::span<std::byte> out, Clock::time_point deadline) {
  size_t done = 0;
  while (done < out.size()) {
    ERR_clear_error();
    size_t n = 0;
    if (SSL_read_ex(ssl_.get(), out.data() + done, out.size() - done, &n) == 1) {
      done += n;
      continue;
    }
    const int err = SSL_get_error(ssl_.get(), 0);
    if (err == SSL_ERROR_WANT_READ) {
      RS_RETURN_IF_ERROR(feed_records(ssl_.get(), *pipe_, deadline));
      continue;
    }
    if (err == SSL_ERROR_ZERO_RETURN)
      return Status(ErrorCode::kDisconnected, "the peer closed the TLS session");
    // A refusal after the handshake (TLS 1.3: the server checks the client's certificate
    // after the client has finished) arrives here as an alert.
    const std::string why = take_openssl_errors();
    return Status(ErrorCode::kDisconnected,
                  fmt::format("TLS receiving failed: {}", why.empty() ? "unknown error" : why));
  }
  return Status::ok();
}

Result<std::vector<std::byte>> TlsSession::receive(Clock::time_point deadline) {
  std::byte len_raw[4];
  RS_RETURN_IF_ERROR(read_exact(len_raw, deadline));
  const uint32_t len = load_le<uint32_t>(len_raw);
  if (len > kMaxMessage)
    return Status(
        ErrorCode::kProtocol,
        fmt::format("the peer sent a {}-byte set-up message (at most {})", len, kMaxMessage));
  std::vector<std::byte> message(len);
  RS_RETURN_IF_ERROR(read_exact(message, deadline));
  return message;
}

Result<std::vector<std::byte>> TlsSession::export_key(const std::string& label,
                                                      std::span<const std::byte> context,
                                                      size_t bytes) const {
  std::vector<std::byte> key(bytes);
  if (SSL_export_keying_material(ssl_.get(), reinterpret_cast<unsigned char*>(key.data()),
                                 key.size(), label.data(), label.size(),
                                 reinterpret_cast<const unsigned char*>(context.data()),
                                 context.size(), 1) != 1)
    return Status(ErrorCode::kInternal,
                  fmt::format("TLS: cannot export keys: {}", take_openssl_errors()));
  return key;
}

// One key per direction and queue, from the exporter (RFC 8446 7.5): its label is ours alone,
// and its context names the direction (0: what the client sends) and the queue.
Result<std::unique_ptr<transport::PayloadSealer>> TlsSession::sealer(bool sending,
                                                                     uint32_t queue) const {
  const bool from_client = sending != (SSL_is_server(ssl_.get()) == 1);
  std::byte context[5];
  context[0] = std::byte{from_client ? uint8_t{0} : uint8_t{1}};
  store_le<uint32_t>(context + 1, queue);
  RS_ASSIGN_OR_RETURN(auto key, export_key("EXPORTER-ramshift-rdma-payload", context, 32));
  auto s = make_payload_sealer(key, queue);
  OPENSSL_cleanse(key.data(), key.size());
  return s;
}

}  // namespace ramshift::security
