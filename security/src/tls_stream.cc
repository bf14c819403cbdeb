#include "tls_stream.h"

#include <fmt/format.h>

#include <cerrno>

namespace ramshift::security {

TlsStream::TlsStream(SslPtr ssl, std::string identity, std::string mode)
    : ssl_(std::move(ssl)), identity_(std::move(identity)) {
  const bool ktls_send = BIO_get_ktls_send(SSL_get_wbio(ssl_.get()));
  const bool ktls_recv = BIO_get_ktls_recv(SSL_get_rbio(ssl_.get()));
  std::string record_layer = ktls_send && ktls_recv ? "kernel TLS"
                             : ktls_send            ? "kernel TLS send, user-space receive"
                             : ktls_recv            ? "user-space send, kernel TLS receive"
                                                    : "user-space TLS";
  description_ =
      fmt::format("{} {}, {}, {}", SSL_get_version(ssl_.get()),
                  SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_.get())), mode, record_layer);
}

Status TlsStream::write(std::span<const std::span<const std::byte>> segments) {
  std::lock_guard lock(mu_);
  if (out_off_ < out_.size()) {
    RS_RETURN_IF_ERROR(push_locked());
    if (out_off_ < out_.size()) return Status(ErrorCode::kWouldBlock, "tls send buffer full");
  }
  out_.clear();
  out_off_ = 0;
  for (auto s : segments) out_.insert(out_.end(), s.begin(), s.end());
  Status s = push_locked();
  return s.code() == ErrorCode::kWouldBlock ? Status::ok() : s;
}

Status TlsStream::flush_some() {
  std::lock_guard lock(mu_);
  return push_locked();
}

bool TlsStream::has_unsent() const {
  std::lock_guard lock(mu_);
  return out_off_ < out_.size();
}

Status TlsStream::push_locked() {
  SigpipeGuard no_sigpipe;
  while (out_off_ < out_.size()) {
    ERR_clear_error();
    size_t written = 0;
    if (SSL_write_ex(ssl_.get(), out_.data() + out_off_, out_.size() - out_off_, &written) == 1) {
      out_off_ += written;
      continue;
    }
    int err = SSL_get_error(ssl_.get(), 0);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
      return Status(ErrorCode::kWouldBlock, "tls send buffer full");
    return failure_locked(err, "sending");
  }
  return Status::ok();
}

Result<size_t> TlsStream::read(std::span<std::byte> out) {
  std::lock_guard lock(mu_);
  SigpipeGuard no_sigpipe;  // TLS 1.3 may answer a peer's key update while reading
  ERR_clear_error();
  size_t got = 0;
  if (SSL_read_ex(ssl_.get(), out.data(), out.size(), &got) == 1) return got;
  int err = SSL_get_error(ssl_.get(), 0);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
    return Status(ErrorCode::kWouldBlock, "no tls record ready");
  // close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a bare TCP close: the end of the stream,
  // as on a plain socket. A cut-short migration is caught by its own protocol (BYE, COMMIT).
  if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && errno == 0)) return size_t{0};
  return failure_locked(err, "receiving");
}

Status TlsStream::failure_locked(int ssl_error, const char* what) {
  if (ssl_error == SSL_ERROR_SYSCALL) {
    int e = errno;
    ErrorCode code = (e == EPIPE || e == ECONNRESET || e == ETIMEDOUT) ? ErrorCode::kDisconnected
                                                                       : ErrorCode::kIo;
    return errno_status(code, fmt::format("TLS {}", what), e);
  }
  std::string why = take_openssl_errors();
  return Status(ErrorCode::kDisconnected,
                fmt::format("TLS {} failed: {}", what, why.empty() ? "unknown error" : why));
}

}  // namespace ramshift::security
