#include "query/matcher.h"

#include <re2/re2.h>

#include <cstring>

#include "query/regex_literals.h"

namespace oklog {
namespace {

// "ULID SP": the payload starts this many bytes into a record.
constexpr size_t kPayloadOffset = Ulid::kTextSize + 1;

// Under RE2's case folding, every ASCII byte folds only to ASCII except k/K (KELVIN SIGN) and
// s/S (LATIN SMALL LETTER LONG S); non-ASCII letters fold across byte sequences too. The block
// filter lower-cases ASCII only, so a folded literal is cut at those bytes before it is given
// to the filter (checked exhaustively in matcher_test).
bool FoldsOutsideAscii(unsigned char c) { return c >= 0x80 || c == 'k' || c == 'K' || c == 's' || c == 'S'; }

bool HasCaseVariants(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  }
  return false;
}

// The pieces of a folded literal between bytes that fold outside ASCII: every text the
// literal matches under RE2's folding contains each piece under ASCII case folding.
std::vector<std::string_view> AsciiFoldPieces(std::string_view lit) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= lit.size(); ++i) {
    if (i == lit.size() || FoldsOutsideAscii(static_cast<unsigned char>(lit[i]))) {
      if (i > start) out.push_back(lit.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

inline char AsciiLower(char c) { return static_cast<unsigned char>(c - 'A') < 26 ? static_cast<char>(c | 0x20) : c; }

void LowerInto(const char* src, size_t n, char* dst) {
  for (size_t i = 0; i < n; ++i) dst[i] = AsciiLower(src[i]);
}

// Below this length a folded piece finds too many candidates to beat RE2 on the whole block.
constexpr size_t kMinFoldedPiece = 3;

const char* LineEnd(const char* p, const char* end) {
  const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
  return nl ? static_cast<const char*>(nl) : end;
}

const char* LineStart(const char* begin, const char* p) {
  const void* nl = memrchr(begin, '\n', static_cast<size_t>(p - begin));
  return nl ? static_cast<const char*>(nl) + 1 : begin;
}

// First record in [begin, end) whose ULID is >= from (skipping malformed lines).
const char* SkipBefore(const char* begin, const char* end, const char* from) {
  while (begin < end) {
    const char* le = LineEnd(begin, end);
    if (static_cast<size_t>(le - begin) >= Ulid::kTextSize && std::memcmp(begin, from, Ulid::kTextSize) >= 0) break;
    begin = le + 1;
  }
  return std::min(begin, end);
}

// The end of the last record in [begin, end) whose ULID is <= to.
const char* TrimAfter(const char* begin, const char* end, const char* to) {
  while (begin < end) {
    const char* content_end = end[-1] == '\n' ? end - 1 : end;
    const char* ls = LineStart(begin, content_end);
    if (static_cast<size_t>(content_end - ls) >= Ulid::kTextSize && std::memcmp(ls, to, Ulid::kTextSize) <= 0) break;
    end = ls;
  }
  return end;
}

}  // namespace

Matcher::~Matcher() = default;

Result<std::unique_ptr<Matcher>> Matcher::Create(const MatchSpec& spec) {
  std::unique_ptr<Matcher> m(new Matcher());
  m->spec_ = spec;
  if (spec.mode == MatchMode::kSubstring) {
    if (spec.q.empty()) {
      m->kind_ = Kind::kAll;
    } else {
      m->kind_ = Kind::kSubstring;
      m->literal_ = LiteralSearcher(spec.q);
      m->filter_.RequireLiteral(spec.q);
    }
  } else {
    RE2::Options options;
    options.set_log_errors(false);
    auto re = std::make_unique<RE2>(spec.q, options);
    if (!re->ok()) return Status::InvalidArgument("compiling regex: " + re->error());
    m->kind_ = Kind::kRegex;
    m->re_ = std::move(re);
    // Longest first: the first exact literal is the prefilter (a longer one has fewer hits).
    std::string literal, folded_piece;
    for (const RequiredLiteral& lit : RequiredLiterals(spec.q)) {
      bool exact = !lit.fold_case || !HasCaseVariants(lit.text);
      if (exact) {
        m->filter_.RequireLiteral(lit.text);
        if (literal.empty()) literal = lit.text;
      } else {
        for (std::string_view piece : AsciiFoldPieces(lit.text)) {
          m->filter_.RequireLiteral(piece);
          if (piece.size() >= kMinFoldedPiece && piece.size() > folded_piece.size()) {
            folded_piece.resize(piece.size());
            LowerInto(piece.data(), piece.size(), folded_piece.data());
          }
        }
      }
    }
    if (!literal.empty()) {
      m->literal_ = LiteralSearcher(literal);
    } else if (!folded_piece.empty()) {
      m->folded_piece_ = LiteralSearcher(folded_piece);
    }
    if (!m->literal_.empty() || !m->folded_piece_.empty()) {
      // LiteralSearcher prefilter
    } else if (HasNoAnchors(spec.q)) {
      m->block_search_ = m->re_.get();
    } else {
      for (const RequiredLiteral& lit : RequiredLiterals(spec.q)) {
        if (!lit.fold_case || !HasCaseVariants(lit.text)) continue;
        auto folded = std::make_unique<RE2>("(?i)" + RE2::QuoteMeta(lit.text), options);
        if (folded->ok()) {
          m->folded_literal_ = std::move(folded);
          m->block_search_ = m->folded_literal_.get();
        }
        break;
      }
    }
  }
  m->filter_.SetTopics(spec.topics);
  return m;
}

bool Matcher::TopicOk(std::string_view payload) const {
  if (spec_.topics.empty()) return true;
  std::string_view topic = payload.substr(0, payload.find(' '));
  for (const std::string& t : spec_.topics) {
    if (t == topic) return true;
  }
  return false;
}

bool Matcher::MatchPayload(std::string_view payload) const {
  if (!TopicOk(payload)) return false;
  switch (kind_) {
    case Kind::kAll:
      return true;
    case Kind::kSubstring:
      return payload.find(spec_.q) != std::string_view::npos;
    case Kind::kRegex:
      return re_->Match(re2::StringPiece(payload.data(), payload.size()), 0, payload.size(), RE2::UNANCHORED,
                        nullptr, 0);
  }
  return false;
}

const char* Matcher::FindCandidate(const char* begin, const char* pos, const char* end, const char* lower) const {
  if (!literal_.empty()) return literal_.Find(pos, end);
  if (!folded_piece_.empty()) {
    const char* lpos = lower + (pos - begin);
    const char* hit = folded_piece_.Find(lpos, lpos + (end - pos));
    return hit ? begin + (hit - lower) : nullptr;
  }
  re2::StringPiece text(pos, static_cast<size_t>(end - pos));
  re2::StringPiece hit;
  if (!block_search_->Match(text, 0, text.size(), RE2::UNANCHORED, &hit, 1)) return nullptr;
  return hit.data();
}

void Matcher::MatchBlock(std::string_view block, const UlidTextRange& range, std::vector<RecordSpan>* out) const {
  const char* base = block.data();
  const char* begin = SkipBefore(base, base + block.size(), range.from);
  const char* end = TrimAfter(begin, base + block.size(), range.to);
  auto emit = [&](const char* ls, const char* le) {
    size_t len = static_cast<size_t>(le - ls) + (le < base + block.size() ? 1 : 0);
    out->push_back(RecordSpan{static_cast<uint32_t>(ls - base), static_cast<uint32_t>(len)});
  };
  const bool prefiltered = kind_ == Kind::kSubstring ||
                           (kind_ == Kind::kRegex && (!literal_.empty() || !folded_piece_.empty() || block_search_));
  if (!prefiltered) {
    // Every record in range is a candidate: match-all, or a regex without a usable literal.
    for (const char* ls = begin; ls < end;) {
      const char* le = LineEnd(ls, end);
      if (static_cast<size_t>(le - ls) >= kPayloadOffset) {
        std::string_view payload(ls + kPayloadOffset, static_cast<size_t>(le - ls) - kPayloadOffset);
        if (kind_ == Kind::kAll ? TopicOk(payload) : MatchPayload(payload)) emit(ls, le);
      }
      ls = le + 1;
    }
    return;
  }
  // Search the whole block for the literal, then find the record around each hit.
  const char* lower = nullptr;
  if (!folded_piece_.empty() && literal_.empty()) {
    thread_local std::string lowered;  // reused: first-touching fresh memory per block is slow
    lowered.resize(static_cast<size_t>(end - begin));
    LowerInto(begin, lowered.size(), lowered.data());
    lower = lowered.data();
  }
  for (const char* pos = begin; pos < end;) {
    const char* hit = FindCandidate(begin, pos, end, lower);
    if (!hit) break;
    const char* ls = LineStart(begin, hit);
    const char* le = LineEnd(hit, end);
    const char* ps = ls + kPayloadOffset;
    if (ps > le) {  // malformed record
      pos = le + 1;
      continue;
    }
    if (hit < ps) {  // the hit starts in the ULID: look again inside this record's payload
      pos = ps;
      continue;
    }
    std::string_view payload(ps, static_cast<size_t>(le - ps));
    bool match;
    if (kind_ == Kind::kSubstring) {
      match = hit + literal_.size() <= le && TopicOk(payload);
    } else {
      match = MatchPayload(payload);
    }
    if (match) emit(ls, le);
    pos = le + 1;
  }
}

}  // namespace oklog
