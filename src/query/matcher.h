// The record filter of a query: substring or RE2 regex over a record's payload, plus an
// optional topic set, applied to whole decompressed blocks.
//
// Semantics (as OK Log, except `$`): the text matched is the payload, the bytes after
// "ULID SP" up to but excluding the LF, i.e. "topic SP line". So `^` anchors at the topic and
// `$` at the end of the line (OK Log matched "...\n" and `$` failed there without (?m)).
// A substring hit that lies in the ULID part does not count. An empty substring matches all.
//
// Thread-safety: immutable after Create; MatchBlock may run on many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/ulid.h"
#include "query/literal_search.h"
#include "query/query_params.h"
#include "segments/segment_file.h"

namespace re2 {
class RE2;
}

namespace oklog {

struct MatchSpec {
  std::string q;
  MatchMode mode = MatchMode::kSubstring;
  std::vector<std::string> topics;  // empty: any topic
};

// A record inside a block: [offset, offset + length), the LF included.
struct RecordSpan {
  uint32_t offset;
  uint32_t length;
};

// Inclusive ULID bounds in their 26-character text form, compared against record prefixes.
struct UlidTextRange {
  char from[Ulid::kTextSize];
  char to[Ulid::kTextSize];
  UlidTextRange(const Ulid& f, const Ulid& t) {
    f.Encode(from);
    t.Encode(to);
  }
};

class Matcher {
 public:
  // InvalidArgument("compiling regex: ...") for a regex RE2 rejects.
  static Result<std::unique_ptr<Matcher>> Create(const MatchSpec& spec);
  ~Matcher();
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // What the block index can use to skip blocks: the substring, or the literals the regex
  // requires, and the topics. Never excludes a block holding a match.
  const BlockFilterQuery& block_filter() const { return filter_; }
  const MatchSpec& spec() const { return spec_; }

  // Appends the spans of the records of block (complete records "ULID SP payload LF", sorted by
  // ULID) whose ULID is within range and whose payload matches. Malformed records (shorter than
  // a ULID and a space) never match.
  void MatchBlock(std::string_view block, const UlidTextRange& range, std::vector<RecordSpan>* out) const;

  // Whether one payload ("topic SP line", no LF) matches: the per-record reference.
  bool MatchPayload(std::string_view payload) const;

 private:
  Matcher() = default;
  // Finds the next prefilter hit in [pos, end); nullptr when none. lower is the ASCII-lower-cased
  // copy of [begin, end) when folded_piece_ is the prefilter.
  const char* FindCandidate(const char* begin, const char* pos, const char* end, const char* lower) const;
  bool TopicOk(std::string_view payload) const;

  enum class Kind { kAll, kSubstring, kRegex };
  MatchSpec spec_;
  Kind kind_ = Kind::kAll;
  BlockFilterQuery filter_;
  std::unique_ptr<re2::RE2> re_;
  // Prefilter: an exact literal (LiteralSearcher); else, for a pattern without anchors, the pattern
  // itself searched over the whole block; else a case-folded literal compiled for RE2; else
  // none (RE2 runs on every record in range).
  LiteralSearcher literal_;
  // Or the longest piece of a case-folded required literal whose bytes fold only within ASCII,
  // lower-cased, searched in a lower-cased copy of the block.
  LiteralSearcher folded_piece_;
  const re2::RE2* block_search_ = nullptr;  // re_ or folded_literal_
  std::unique_ptr<re2::RE2> folded_literal_;
};

}  // namespace oklog
