#include "query/matcher.h"

#include <gtest/gtest.h>
#include <re2/re2.h>

#include <random>

#include "query/regex_literals.h"

namespace oklog {
namespace {

constexpr uint64_t kBaseMs = 1700000000000;

// Records "ULID SP topic SP line LF" with increasing ULIDs.
struct Block {
  std::string text;
  std::vector<Ulid> ulids;
  std::vector<std::string> records;  // each with its LF
};

Block MakeBlock(const std::vector<std::pair<std::string, std::string>>& topic_lines, uint64_t ms = kBaseMs) {
  Block b;
  for (size_t i = 0; i < topic_lines.size(); ++i) {
    Ulid u = Ulid::FromParts(ms + i, 0, i);
    std::string rec = u.ToString() + " " + topic_lines[i].first + " " + topic_lines[i].second + "\n";
    b.ulids.push_back(u);
    b.records.push_back(rec);
    b.text += rec;
  }
  return b;
}

std::unique_ptr<Matcher> Make(MatchSpec spec) {
  auto m = Matcher::Create(spec);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

std::vector<std::string> MatchAll(const Matcher& m, const Block& b, Ulid from = Ulid::MinAt(0), Ulid to = Ulid::Max()) {
  std::vector<RecordSpan> spans;
  m.MatchBlock(b.text, UlidTextRange(from, to), &spans);
  std::vector<std::string> out;
  for (const RecordSpan& s : spans) out.push_back(b.text.substr(s.offset, s.length));
  return out;
}

std::vector<std::string> Lines(const Block& b, std::initializer_list<size_t> idx) {
  std::vector<std::string> out;
  for (size_t i : idx) out.push_back(b.records[i]);
  return out;
}

TEST(Matcher, EmptySubstringMatchesEveryRecord) {
  Block b = MakeBlock({{"api", "one"}, {"web", "two"}, {"api", ""}});
  EXPECT_EQ(MatchAll(*Make({}), b), b.records);
}

TEST(Matcher, SubstringHitsInTheUlidDoNotCount) {
  Block b = MakeBlock({{"api", "one"}, {"web", "two 01"}});
  std::string ulid_part = b.ulids[0].ToString().substr(3, 6);
  EXPECT_TRUE(MatchAll(*Make({ulid_part}), b).empty());
  // But the same bytes later in the payload of the same record do count.
  Block c = MakeBlock({{"api", "x " + b.ulids[0].ToString()}});
  EXPECT_EQ(MatchAll(*Make({c.ulids[0].ToString().substr(0, 10)}), c).size(), 1u);
}

TEST(Matcher, SubstringSpansTopicAndLine) {
  Block b = MakeBlock({{"api", "GET /x"}, {"web", "GET /y"}});
  EXPECT_EQ(MatchAll(*Make({"api GET"}), b), Lines(b, {0}));
  EXPECT_TRUE(MatchAll(*Make({"x\n"}), b).empty());  // never across records
}

TEST(Matcher, RegexCaretAnchorsAtTopicAndDollarAtEndOfLine) {
  Block b = MakeBlock({{"api", "ends here"}, {"web", "here ends"}});
  EXPECT_EQ(MatchAll(*Make({"^api ", MatchMode::kRegex}), b), Lines(b, {0}));
  EXPECT_EQ(MatchAll(*Make({"here$", MatchMode::kRegex}), b), Lines(b, {0}));
  EXPECT_EQ(MatchAll(*Make({"^web here ends$", MatchMode::kRegex}), b), Lines(b, {1}));
  EXPECT_TRUE(MatchAll(*Make({"^[0-9A-Z]{26}", MatchMode::kRegex}), b).empty());  // the ULID is not matched
}

TEST(Matcher, CaseInsensitiveRegex) {
  Block b = MakeBlock({{"api", "Upstream TIMEOUT"}, {"api", "upstream timeout"}, {"api", "upstream time out"}});
  EXPECT_EQ(MatchAll(*Make({"(?i)upstream timeout", MatchMode::kRegex}), b), Lines(b, {0, 1}));
  EXPECT_EQ(MatchAll(*Make({"(?i)TIMEOUT$", MatchMode::kRegex}), b), Lines(b, {0, 1}));
  // Unicode folding: the Kelvin sign folds with k.
  Block k = MakeBlock({{"api", "\xE2\x84\xAA" "ey"}, {"api", "KEY"}});
  EXPECT_EQ(MatchAll(*Make({"(?i)key", MatchMode::kRegex}), k), Lines(k, {0, 1}));
}

TEST(Matcher, BadRegexIsAnInvalidArgument) {
  auto m = Matcher::Create({"a(b", MatchMode::kRegex});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(m.status().message().rfind("compiling regex: ", 0), 0u) << m.status().message();
}

TEST(Matcher, TopicFilter) {
  Block b = MakeBlock({{"api", "x"}, {"web", "x"}, {"db", "x"}, {"api-2", "x"}});
  EXPECT_EQ(MatchAll(*Make({"x", MatchMode::kSubstring, {"api", "db"}}), b), Lines(b, {0, 2}));
  EXPECT_EQ(MatchAll(*Make({"", MatchMode::kSubstring, {"web"}}), b), Lines(b, {1}));
  EXPECT_EQ(MatchAll(*Make({"x$", MatchMode::kRegex, {"api-2"}}), b), Lines(b, {3}));
}

TEST(Matcher, UlidRangeIsInclusiveAndExact) {
  Block b = MakeBlock({{"a", "x"}, {"a", "x"}, {"a", "x"}, {"a", "x"}, {"a", "x"}});
  auto m = Make({"x"});
  EXPECT_EQ(MatchAll(*m, b, b.ulids[1], b.ulids[3]), Lines(b, {1, 2, 3}));
  EXPECT_EQ(MatchAll(*m, b, b.ulids[4], Ulid::Max()), Lines(b, {4}));
  EXPECT_EQ(MatchAll(*m, b, Ulid::MinAt(0), b.ulids[0]), Lines(b, {0}));
  EXPECT_TRUE(MatchAll(*m, b, b.ulids[3], b.ulids[2]).empty());
  auto all = Make({});
  EXPECT_EQ(MatchAll(*all, b, Ulid::MinAt(kBaseMs + 2), Ulid::MaxAt(kBaseMs + 2)), Lines(b, {2}));
}

TEST(Matcher, MalformedShortLinesNeverMatch) {
  std::string text = "short\n" + MakeBlock({{"api", "x"}}).text + "\n";
  std::vector<RecordSpan> spans;
  Make({})->MatchBlock(text, UlidTextRange(Ulid::MinAt(0), Ulid::Max()), &spans);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].offset, 6u);
}

TEST(RegexLiterals, FindsTheRequiredRuns) {
  auto lits = [](const char* p) { return RequiredLiterals(p); };
  EXPECT_EQ(lits("\"status\":5[0-9][0-9]"), (std::vector<RequiredLiteral>{{"\"status\":5", false}}));
  EXPECT_EQ(lits("checkout.*(timeout|rate limited)"), (std::vector<RequiredLiteral>{{"checkout", false}}));
  EXPECT_EQ(lits("(?i)upstream timeout"), (std::vector<RequiredLiteral>{{"upstream timeout", true}}));
  EXPECT_EQ(lits("^api foo\\.bar$"), (std::vector<RequiredLiteral>{{"api foo.bar", false}}));
  EXPECT_EQ(lits("ab+c"), (std::vector<RequiredLiteral>{{"a", false}, {"b", false}, {"c", false}}));
  EXPECT_EQ(lits("x(?:abc)+y"), (std::vector<RequiredLiteral>{{"abc", false}, {"x", false}, {"y", false}}));
  EXPECT_EQ(lits("ab*c"), (std::vector<RequiredLiteral>{{"a", false}, {"c", false}}));
  EXPECT_EQ(lits("\\Qa.b\\E+c"), (std::vector<RequiredLiteral>{{"a.", false}, {"b", false}, {"c", false}}));
  EXPECT_EQ(lits("a{2}x{,3}"), (std::vector<RequiredLiteral>{{"x{,3}", false}, {"a", false}}));
  EXPECT_TRUE(lits("a|b").empty());
  EXPECT_TRUE(lits("\\d+").empty());
  EXPECT_TRUE(lits("\\1").empty());  // not modelled: nothing rather than a guess
}

TEST(RegexLiterals, AnchorDetection) {
  EXPECT_TRUE(HasNoAnchors("status=5[0-9]+"));
  EXPECT_TRUE(HasNoAnchors("[$^]x\\$"));
  EXPECT_TRUE(HasNoAnchors("\\bword\\B"));
  EXPECT_FALSE(HasNoAnchors("^api"));
  EXPECT_FALSE(HasNoAnchors("x|y$"));
  EXPECT_FALSE(HasNoAnchors("(?m)(a\\z)"));
  EXPECT_FALSE(HasNoAnchors("\\Ax"));
  EXPECT_FALSE(HasNoAnchors("\\1"));  // not understood: treated as anchored
}

TEST(FoldCase, OnlyKAndSFoldOutsideAscii) {
  // The block filter lower-cases ASCII only; the matcher cuts folded literals at the ASCII
  // letters with non-ASCII fold partners. Check the list against RE2's tables.
  RE2 re("(?i)[a-zA-Z]");
  std::vector<uint32_t> found;
  for (uint32_t cp = 0x80; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp < 0xE000) continue;
    std::string s;
    if (cp < 0x800) {
      s = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 63))};
    } else if (cp < 0x10000) {
      s = {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 63)),
           static_cast<char>(0x80 | (cp & 63))};
    } else {
      s = {static_cast<char>(0xF0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 63)),
           static_cast<char>(0x80 | ((cp >> 6) & 63)), static_cast<char>(0x80 | (cp & 63))};
    }
    if (RE2::FullMatch(s, re)) found.push_back(cp);
  }
  EXPECT_EQ(found, (std::vector<uint32_t>{0x017F, 0x212A}));
}

// Random records and patterns over a small alphabet rich in case, folding and punctuation.
class Random {
 public:
  explicit Random(uint32_t seed) : rng_(seed) {}
  size_t Below(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool Coin(int one_in) { return Below(one_in) == 0; }

  std::string Token() {
    static const char* kPieces[] = {"a", "b", "c", "k", "K", "s", "S", "x", "A", "B", "0", "1", ".", "-", "_",
                                    "é", "É", "ſ", "\xE2\x84\xAA", "ab", "abc", "timeout", "TimeOut", "{", "}"};
    std::string t;
    size_t n = 1 + Below(4);
    for (size_t i = 0; i < n; ++i) t += kPieces[Below(std::size(kPieces))];
    return t;
  }
  std::string Line() {
    std::string l;
    size_t n = Below(6);
    for (size_t i = 0; i < n; ++i) l += (i ? " " : "") + Token();
    return l;
  }
  std::string Literal() {
    static const char* kLits[] = {"a", "b", "ab", "abc", "k", "K", "s", "x", "\\.", "-", "é", "ſ", "time", "out",
                                  " ", "0", "A"};
    return kLits[Below(std::size(kLits))];
  }
  std::string Atom(int depth) {
    switch (Below(depth > 2 ? 6 : 11)) {
      case 0: case 1: case 2: return Literal();
      case 3: return ".";
      case 4: {
        static const char* kClasses[] = {"[a-c]", "[^ ]", "\\d", "\\w", "\\s", "[kK]", "[[:alpha:]]", "[]a]"};
        return kClasses[Below(std::size(kClasses))];
      }
      case 5: {
        static const char* kZero[] = {"^", "$", "\\b", "\\B", "(?i)", "(?-i)"};
        return kZero[Below(std::size(kZero))];
      }
      case 6: return "(" + Concat(depth + 1) + ")";
      case 7: return "(?:" + Concat(depth + 1) + "|" + Concat(depth + 1) + ")";
      case 8: return "(?i:" + Concat(depth + 1) + ")";
      case 9: return "\\Qa.b" + Literal() + "\\E";
      default: return "(?P<n" + std::to_string(Below(100)) + ">" + Concat(depth + 1) + ")";
    }
  }
  std::string Concat(int depth) {
    std::string p;
    size_t n = 1 + Below(4);
    for (size_t i = 0; i < n; ++i) {
      std::string a = Atom(depth);
      if (a.size() > 1 && a[0] == '(' && a[1] == '?' && a.back() == ')' && a.find(':') == std::string::npos) {
        p += a;  // a flag group takes no repetition
        continue;
      }
      if (a == "^" || a == "$" || a == "\\b" || a == "\\B") {
        p += a;
        continue;
      }
      static const char* kRep[] = {"", "", "", "*", "+", "?", "{2}", "{1,2}", "+?", "{0}"};
      p += a + kRep[Below(std::size(kRep))];
    }
    return p;
  }
  std::string Pattern() { return (Coin(4) ? "(?i)" : "") + Concat(0); }

 private:
  std::mt19937 rng_;
};

TEST(Matcher, RegexAgreesWithPerRecordReference) {
  Random r(20240601);
  const char* kTopics[] = {"api", "web", "k8s"};
  int tested = 0, with_matches = 0;
  for (int round = 0; round < 400; ++round) {
    std::vector<std::pair<std::string, std::string>> lines;
    for (int i = 0; i < 60; ++i) lines.emplace_back(kTopics[r.Below(3)], r.Line());
    Block b = MakeBlock(lines);
    for (int k = 0; k < 10; ++k) {
      std::string pattern = r.Pattern();
      RE2 ref(pattern, RE2::Quiet);
      if (!ref.ok()) continue;
      ++tested;
      std::vector<std::string> topics;
      if (r.Coin(5)) topics.push_back(kTopics[r.Below(3)]);
      auto m = Make({pattern, MatchMode::kRegex, topics});
      ASSERT_NE(m, nullptr);
      size_t lo = r.Below(lines.size()), hi = lo + r.Below(lines.size() - lo);
      std::vector<std::string> want;
      for (size_t i = lo; i <= hi; ++i) {
        std::string_view payload(b.records[i]);
        payload.remove_prefix(Ulid::kTextSize + 1);
        payload.remove_suffix(1);
        bool topic_ok = topics.empty() || payload.substr(0, payload.find(' ')) == topics[0];
        if (topic_ok && RE2::PartialMatch(payload, ref)) want.push_back(b.records[i]);
      }
      if (!want.empty()) ++with_matches;
      ASSERT_EQ(MatchAll(*m, b, b.ulids[lo], b.ulids[hi]), want) << "pattern " << pattern;
    }
  }
  EXPECT_GT(tested, 2000);
  EXPECT_GT(with_matches, 500);
}

TEST(Matcher, SubstringAgreesWithPerRecordReference) {
  Random r(7);
  for (int round = 0; round < 300; ++round) {
    std::vector<std::pair<std::string, std::string>> lines;
    for (int i = 0; i < 40; ++i) lines.emplace_back(r.Coin(2) ? "api" : "web", r.Line());
    Block b = MakeBlock(lines);
    for (int k = 0; k < 10; ++k) {
      std::string q = r.Coin(3) ? r.Token() : r.Token().substr(0, 2);
      if (r.Coin(10)) q = b.ulids[r.Below(lines.size())].ToString().substr(r.Below(20), 5);
      auto m = Make({q});
      std::vector<std::string> want;
      for (const std::string& rec : b.records) {
        std::string_view payload(rec);
        payload.remove_prefix(Ulid::kTextSize + 1);
        payload.remove_suffix(1);
        if (payload.find(q) != std::string_view::npos) want.push_back(rec);
      }
      ASSERT_EQ(MatchAll(*m, b), want) << "q " << q;
    }
  }
}

TEST(RegexLiterals, EveryLiteralIsInEveryMatch) {
  Random r(99);
  int checked = 0;
  for (int k = 0; k < 6000; ++k) {
    std::string pattern = r.Pattern();
    RE2 re(pattern, RE2::Quiet);
    if (!re.ok()) continue;
    std::vector<RequiredLiteral> lits = RequiredLiterals(pattern);
    if (lits.empty()) continue;
    std::vector<std::unique_ptr<RE2>> folded;
    for (const auto& l : lits) folded.push_back(std::make_unique<RE2>("(?i)" + RE2::QuoteMeta(l.text)));
    for (int i = 0; i < 200; ++i) {
      std::string text = r.Line();
      if (!RE2::PartialMatch(text, re)) continue;
      ++checked;
      for (size_t j = 0; j < lits.size(); ++j) {
        bool has = lits[j].fold_case ? RE2::PartialMatch(text, *folded[j])
                                     : text.find(lits[j].text) != std::string::npos;
        ASSERT_TRUE(has) << "pattern " << pattern << " literal \"" << lits[j].text << "\" text \"" << text << "\"";
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

}  // namespace
}  // namespace oklog
