#include "query/regex_literals.h"

#include <algorithm>

namespace oklog {
namespace {

// What a sub-expression tells about the texts it matches.
struct Info {
  bool exact = false;  // matches exactly `str` (empty: only the empty string, e.g. ^ or \b)
  std::string str;
  bool fold = false;                      // str compared under case folding
  std::vector<RequiredLiteral> required;  // when !exact: substrings of every match
};

Info Exact(std::string s, bool fold) {
  Info i;
  i.exact = true;
  i.str = std::move(s);
  i.fold = fold;
  return i;
}

// What must appear in every match of x, as a list.
std::vector<RequiredLiteral> RequiredOf(const Info& x) {
  if (!x.exact) return x.required;
  if (x.str.empty()) return {};
  return {RequiredLiteral{x.str, x.fold}};
}

// Concatenation: adjacent exact pieces join into runs. Joining an exact piece to a folded run
// gives a folded run, which is weaker and therefore still sound.
class ConcatBuilder {
 public:
  void Add(Info x) {
    if (x.exact) {
      run_ += x.str;
      run_fold_ = run_fold_ || (x.fold && !x.str.empty());
      return;
    }
    all_exact_ = false;
    CloseRun();
    for (auto& r : x.required) required_.push_back(std::move(r));
  }
  Info Finish() {
    if (all_exact_) return Exact(std::move(run_), run_fold_);
    CloseRun();
    Info i;
    i.required = std::move(required_);
    return i;
  }

 private:
  void CloseRun() {
    if (!run_.empty()) required_.push_back({std::move(run_), run_fold_});
    run_.clear();
    run_fold_ = false;
  }
  bool all_exact_ = true;
  std::string run_;
  bool run_fold_ = false;
  std::vector<RequiredLiteral> required_;
};

size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

bool IsAsciiAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// A recursive-descent walk over RE2 syntax. Anything unexpected sets ok_ = false and the
// caller returns no literals at all.
class Parser {
 public:
  explicit Parser(std::string_view p) : p_(p) {}

  std::vector<RequiredLiteral> Run() {
    Info top = ParseAlternation();
    if (!ok_ || i_ != p_.size()) return {};
    return RequiredOf(top);
  }
  // Whether the walk completed and met no ^, $, \A or \z.
  bool Unanchored() {
    (void)ParseAlternation();
    return ok_ && i_ == p_.size() && !anchored_;
  }

 private:
  bool AtEnd() const { return i_ >= p_.size(); }
  char Peek() const { return p_[i_]; }
  void Fail() {
    ok_ = false;
    i_ = p_.size();
  }

  // alternation := concat ('|' concat)*, up to ')' or the end. Flags set inside persist
  // across '|' until the enclosing group ends, as in RE2.
  Info ParseAlternation() {
    Info first = ParseConcat();
    if (AtEnd() || Peek() != '|') return first;
    while (!AtEnd() && Peek() == '|') {
      ++i_;
      (void)ParseConcat();
    }
    return Info{};  // a choice requires nothing we can name cheaply
  }

  Info ParseConcat() {
    ConcatBuilder b;
    while (ok_ && !AtEnd() && Peek() != '|' && Peek() != ')') {
      Info atom = ParseAtom(&b);
      if (!ok_) break;
      atom = ParseRepeats(std::move(atom));
      b.Add(std::move(atom));
    }
    return b.Finish();
  }

  // Parses {n}, {n,} or {n,m} at i_; false (and i_ unchanged) when it is not one.
  bool ParseBraces(int* min) {
    size_t j = i_;
    if (j >= p_.size() || p_[j] != '{') return false;
    ++j;
    size_t d0 = j;
    int n = 0;
    while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9') {
      n = std::min(n * 10 + (p_[j] - '0'), 100000);
      ++j;
    }
    if (j == d0 || j >= p_.size()) return false;
    if (p_[j] == ',') {
      ++j;
      while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9') ++j;
    }
    if (j >= p_.size() || p_[j] != '}') return false;
    i_ = j + 1;
    *min = n;
    return true;
  }

  Info ParseRepeats(Info x) {
    while (ok_ && !AtEnd()) {
      char c = Peek();
      int min = 0;
      if (c == '*' || c == '?') {
        ++i_;
        min = 0;
      } else if (c == '+') {
        ++i_;
        min = 1;
      } else if (!ParseBraces(&min)) {
        break;
      }
      if (!AtEnd() && Peek() == '?') ++i_;  // non-greedy
      Info r;
      if (min >= 1) r.required = RequiredOf(x);
      x = std::move(r);
    }
    return x;
  }

  // One atom. \Q...\E adds all but its last character straight to b (a repetition after \E
  // applies to the last character only) and returns the last.
  Info ParseAtom(ConcatBuilder* b) {
    unsigned char c = static_cast<unsigned char>(Peek());
    switch (c) {
      case '(':
        return ParseGroup();
      case '[':
        SkipClass();
        return Info{};
      case '.':
        ++i_;
        return Info{};
      case '^':
      case '$':
        ++i_;
        anchored_ = true;
        return Exact("", false);
      case '\\':
        return ParseEscape(b);
      case '*':
      case '+':
      case '?':
        Fail();  // RE2 rejects these here ("missing argument")
        return Info{};
      default: {
        size_t n = std::min(Utf8Length(c), p_.size() - i_);
        std::string s(p_.substr(i_, n));
        i_ += n;
        return Exact(std::move(s), fold_);
      }
    }
  }

  Info ParseGroup() {
    ++i_;  // '('
    bool saved_fold = fold_;
    if (!AtEnd() && Peek() == '?') {
      ++i_;
      if (AtEnd()) return Fail(), Info{};
      char c = Peek();
      if (c == 'P' || c == '<') {  // (?P<name>...) or (?<name>...)
        size_t close = p_.find('>', i_);
        if (close == std::string_view::npos) return Fail(), Info{};
        i_ = close + 1;
      } else {
        // Flags: (?flags) or (?flags:...)
        bool negate = false;
        bool fold = fold_;
        while (!AtEnd() && Peek() != ')' && Peek() != ':') {
          char f = Peek();
          if (f == '-') {
            negate = true;
          } else if (f == 'i') {
            fold = !negate;
          } else if (f != 'm' && f != 's' && f != 'U') {
            return Fail(), Info{};
          }
          ++i_;
        }
        if (AtEnd()) return Fail(), Info{};
        if (Peek() == ')') {  // (?i): for the rest of the enclosing group
          ++i_;
          fold_ = fold;
          return Exact("", false);
        }
        ++i_;  // ':'
        fold_ = fold;
      }
    }
    Info inner = ParseAlternation();
    fold_ = saved_fold;
    if (AtEnd() || Peek() != ')') return Fail(), Info{};
    ++i_;
    return inner;
  }

  // Skips a character class, honouring a leading ']' or '^]', [:name:] and escapes.
  void SkipClass() {
    ++i_;  // '['
    if (!AtEnd() && Peek() == '^') ++i_;
    if (!AtEnd() && Peek() == ']') ++i_;
    while (!AtEnd()) {
      char c = Peek();
      if (c == ']') {
        ++i_;
        return;
      }
      if (c == '[' && i_ + 1 < p_.size() && p_[i_ + 1] == ':') {
        size_t close = p_.find(":]", i_ + 2);
        if (close != std::string_view::npos) {
          i_ = close + 2;
          continue;
        }
        ++i_;
        continue;
      }
      if (c == '\\') {
        ++i_;
        if (AtEnd()) return Fail();
        char e = Peek();
        if ((e == 'x' || e == 'p' || e == 'P') && i_ + 1 < p_.size() && p_[i_ + 1] == '{') {
          size_t close = p_.find('}', i_);
          if (close == std::string_view::npos) return Fail();
          i_ = close + 1;
          continue;
        }
        i_ += std::min(Utf8Length(static_cast<unsigned char>(e)), p_.size() - i_);
        continue;
      }
      i_ += std::min(Utf8Length(static_cast<unsigned char>(c)), p_.size() - i_);
    }
    Fail();  // unterminated
  }

  Info ParseEscape(ConcatBuilder* b) {
    ++i_;  // '\\'
    if (AtEnd()) return Fail(), Info{};
    char c = Peek();
    ++i_;
    switch (c) {
      case 'd': case 'D': case 'w': case 'W': case 's': case 'S': case 'C':
        return Info{};
      case 'A': case 'z':
        anchored_ = true;
        return Exact("", false);
      case 'b': case 'B':
        return Exact("", false);
      case 'p': case 'P':
        if (!AtEnd() && Peek() == '{') {
          size_t close = p_.find('}', i_);
          if (close == std::string_view::npos) return Fail(), Info{};
          i_ = close + 1;
        } else if (!AtEnd()) {
          i_ += std::min(Utf8Length(static_cast<unsigned char>(Peek())), p_.size() - i_);
        }
        return Info{};
      case 'x':
        if (!AtEnd() && Peek() == '{') {
          size_t close = p_.find('}', i_);
          if (close == std::string_view::npos) return Fail(), Info{};
          i_ = close + 1;
        } else {
          i_ = std::min(i_ + 2, p_.size());
        }
        return Info{};  // a code point: not worth encoding, just breaks the run
      case 'a': return Exact("\a", fold_);
      case 'f': return Exact("\f", fold_);
      case 'n': return Exact("\n", fold_);
      case 'r': return Exact("\r", fold_);
      case 't': return Exact("\t", fold_);
      case 'v': return Exact("\v", fold_);
      case 'Q': {
        size_t end = p_.find("\\E", i_);
        std::string_view lit = p_.substr(i_, end == std::string_view::npos ? std::string_view::npos : end - i_);
        i_ = end == std::string_view::npos ? p_.size() : end + 2;
        if (lit.empty()) return Exact("", false);
        // The last UTF-8 character is the atom a following repetition applies to.
        size_t last = lit.size() - 1;
        while (last > 0 && (static_cast<unsigned char>(lit[last]) & 0xC0) == 0x80) --last;
        if (last > 0) b->Add(Exact(std::string(lit.substr(0, last)), fold_));
        return Exact(std::string(lit.substr(last)), fold_);
      }
      default:
        if (static_cast<unsigned char>(c) < 0x80 && !IsAsciiAlnum(c)) return Exact(std::string(1, c), fold_);
        return Fail(), Info{};  // octal, back references, anything we do not model
    }
  }

  std::string_view p_;
  size_t i_ = 0;
  bool fold_ = false;
  bool ok_ = true;
  bool anchored_ = false;
};

}  // namespace

std::vector<RequiredLiteral> RequiredLiterals(std::string_view pattern) {
  std::vector<RequiredLiteral> out = Parser(pattern).Run();
  std::erase_if(out, [](const RequiredLiteral& l) { return l.text.empty(); });
  std::stable_sort(out.begin(), out.end(),
                   [](const RequiredLiteral& a, const RequiredLiteral& b) { return a.text.size() > b.text.size(); });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool HasNoAnchors(std::string_view pattern) { return Parser(pattern).Unanchored(); }

}  // namespace oklog
