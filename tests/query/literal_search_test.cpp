// Tests for src/query/literal_search.cpp: the vector search finds exactly what
// std::string_view::find finds, at every needle length, alignment and distance from the end.
#include "query/literal_search.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>

namespace oklog {
namespace {

// Every occurrence, from each position after the previous hit, as the matcher walks a block.
void ExpectSameHits(const LiteralSearcher& s, std::string_view text) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  size_t from = 0;
  for (;;) {
    const size_t want = text.find(s.needle(), from);
    const char* got = s.Find(begin + from, end);
    const char* got_base = s.FindBaseline(begin + from, end);
    if (want == std::string_view::npos) {
      ASSERT_EQ(got, nullptr) << "needle '" << s.needle() << "' from " << from << " in '" << text << "'";
      ASSERT_EQ(got_base, nullptr) << "needle '" << s.needle() << "' from " << from;
      return;
    }
    ASSERT_EQ(got, begin + want) << "needle '" << s.needle() << "' from " << from << " in '" << text << "'";
    ASSERT_EQ(got_base, begin + want) << "needle '" << s.needle() << "' from " << from;
    from = want + 1;
  }
}

TEST(LiteralSearch, EmptyNeedleIsFoundAtTheStartAndShortTextsHoldNothingLonger) {
  const std::string text = "abc";
  EXPECT_EQ(LiteralSearcher("").Find(text.data(), text.data() + 3), text.data());
  EXPECT_EQ(LiteralSearcher("abcd").Find(text.data(), text.data() + 3), nullptr);
  EXPECT_EQ(LiteralSearcher("abc").Find(text.data(), text.data() + 3), text.data());
  EXPECT_EQ(LiteralSearcher("c").Find(text.data(), text.data() + 3), text.data() + 2);
  EXPECT_EQ(LiteralSearcher("x").Find(text.data(), text.data()), nullptr);
}

TEST(LiteralSearch, FindsANeedleAtEveryOffsetIncludingTheVeryEnd) {
  // Crosses the 16- and 64-byte steps and the tail handed to memmem at every position, in a
  // text of near misses (the needle with one non-probe byte changed): a candidate everywhere.
  for (size_t len : {2, 3, 7, 16, 17, 31, 32, 33, 63, 64, 65, 100}) {
    std::string needle;
    for (size_t i = 0; i < len; ++i) needle += static_cast<char>('a' + i % 26);
    needle[0] = '"';
    needle[len - 1] = '5';
    const LiteralSearcher s(needle);
    std::string near = needle;
    for (size_t i = 0; i < len; ++i) {
      if (i != s.probes().first && i != s.probes().second) {
        near[i] = '#';
        break;
      }
    }
    for (size_t size = len; size < len + 200; size += 7) {
      for (size_t at = 0; at + len <= size; ++at) {
        std::string text;
        while (text.size() < size) text += near;
        text.resize(size);
        text.replace(at, len, needle);
        ExpectSameHits(s, text);
      }
    }
  }
}

TEST(LiteralSearch, ProbesTheRarestBytesOfLogText) {
  // `"` starts every JSON key and `:` follows it; `u` and `5` are far rarer.
  EXPECT_EQ(LiteralSearcher("\"status\":5").probes(), std::make_pair(size_t{9}, size_t{5}));
  // Ties: the first rarest byte, then the farthest of the next rarest.
  EXPECT_EQ(LiteralSearcher("eeeee").probes(), std::make_pair(size_t{0}, size_t{4}));
  EXPECT_EQ(LiteralSearcher("ab").probes(), std::make_pair(size_t{1}, size_t{0}));
  EXPECT_EQ(LiteralSearcher("x").probes(), std::make_pair(size_t{0}, size_t{0}));
  EXPECT_EQ(LiteralSearcher("").probes(), std::make_pair(size_t{0}, size_t{0}));
  // Upper case, non-ASCII and rare punctuation rank below lower-case letters.
  EXPECT_EQ(LiteralSearcher("error Timeout").probes().first, 6u);
  EXPECT_EQ(LiteralSearcher("caf\xc3\xa9 ok").probes(), std::make_pair(size_t{3}, size_t{4}));
}

TEST(LiteralSearch, AgreesWithFindOnRandomTextsOverSmallAlphabets) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 3000; ++round) {
    const int alphabet = 2 + static_cast<int>(rng() % 4);  // dense partial matches
    std::string text(rng() % 400, ' ');
    for (auto& c : text) c = static_cast<char>('a' + rng() % alphabet);
    std::string needle(1 + rng() % 12, ' ');
    for (auto& c : needle) c = static_cast<char>('a' + rng() % alphabet);
    if (!text.empty() && rng() % 2 == 0) {  // plant it, sometimes straddling the tail
      size_t at = rng() % text.size();
      text.replace(at, std::min(needle.size(), text.size() - at), needle);
    }
    ExpectSameHits(LiteralSearcher(needle), text);
  }
}

TEST(LiteralSearch, HandlesEveryByteValue) {
  std::string text;
  for (int i = 0; i < 3; ++i)
    for (int b = 0; b < 256; ++b) text += static_cast<char>(b);
  for (int b = 0; b < 255; ++b) {
    const std::string needle = {static_cast<char>(b), static_cast<char>(b + 1)};
    ExpectSameHits(LiteralSearcher(needle), text);
  }
  ExpectSameHits(LiteralSearcher(std::string("\xff\x00\x01", 3)), text);
}

}  // namespace
}  // namespace oklog
