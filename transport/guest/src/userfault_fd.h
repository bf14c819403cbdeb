// One way to open a userfaultfd, shared by the dirty tracker (write-protect) and the
// post-copy destination (missing pages).
#pragma once

#include <cstdint>

#include "ramshift/base/status.h"
#include "ramshift/base/unique_fd.h"

namespace ramshift::guest {

// A non-blocking, close-on-exec userfaultfd with UFFDIO_API done for `features`: kNotFound
// with the reason when the kernel lacks userfaultfd, forbids it to this user, or lacks a
// feature asked for.
Result<UniqueFd> open_userfaultfd(uint64_t features);

}  // namespace ramshift::guest
