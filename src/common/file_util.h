// Small POSIX file helpers shared by the ingest log, the store segment writer, compaction,
// retention and the consumer. Each returns an IOError (ResourceExhausted for a full disk)
// naming the path on failure. Thread-safe: no shared state.
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace oklog {

// Writes all n bytes, retrying short writes and EINTR.
Status WriteAll(int fd, const char* data, size_t n, const std::string& path);
// fsyncs a directory, making renames and creations inside it durable.
Status SyncDir(const std::string& dir);
// Appends the whole file to *out, starting at out->size() (existing bytes are kept).
Status AppendFile(const std::string& path, std::string* out);

}  // namespace oklog
