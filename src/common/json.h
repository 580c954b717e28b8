// JSON string escaping of arbitrary bytes, as Go's encoding/json does: invalid UTF-8 becomes
// U+FFFD, control characters \u00XX, '"' and '\\' escaped. Used by the query's format=json and
// by GET /cluster, where names and addresses are whatever a peer sent. Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace oklog {

// Appends the escaped bytes, without the surrounding quotes.
void AppendJsonEscaped(std::string_view bytes, std::string* out);

}  // namespace oklog
