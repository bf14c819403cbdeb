// Owners for OpenSSL objects and the text of OpenSSL's errors. Private to security/.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "ramshift/base/status.h"

namespace ramshift::security {

template <auto Free>
struct OpenSslDeleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, OpenSslDeleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, OpenSslDeleter<SSL_free>>;
using X509Ptr = std::unique_ptr<X509, OpenSslDeleter<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter<EVP_PKEY_free>>;
using SessionPtr = std::unique_ptr<SSL_SESSION, OpenSslDeleter<SSL_SESSION_free>>;

// Drains this thread's OpenSSL error queue into one line ("certificate verify failed; ...");
// empty when the queue was empty.
std::string take_openssl_errors();

// The PEM certificates in `path` (the first is the leaf). kNotFound / kInvalidArgument name
// the file.
Result<std::vector<X509Ptr>> read_certificates(const std::string& path);
Result<PkeyPtr> read_private_key(const std::string& path);

// "CN=host-a,O=example" (RFC 2253), the form --tls-authz lists.
std::string subject_of(X509* cert);
// "2027-01-05 10:00:00 UTC".
std::string not_after_of(X509* cert);

bool file_exists(const std::string& path);

// Keeps SIGPIPE from this thread while it lives. OpenSSL writes to the socket with write(),
// which raises SIGPIPE on a peer that has gone; the plain tcp path uses MSG_NOSIGNAL, and a
// library must not kill its process for a closed connection either. A SIGPIPE raised inside
// is consumed; one already pending before is left alone.
class SigpipeGuard {
 public:
  SigpipeGuard();
  ~SigpipeGuard();
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  bool active_ = false;
  sigset_t old_{};
};

}  // namespace ramshift::security
