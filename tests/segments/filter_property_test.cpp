// Property: the per-block gram filter never excludes a block that holds the query term. Random
// records and random terms (whole tokens, partial tokens, punctuation, UTF-8, case changes,
// several required literals at once as a regex gives), over several seeds and block sizes.
// Complements BlockFilter.NeverCausesAMiss in segment_file_test.cpp, which draws substrings.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "segments/record_merge.h"
#include "segments/segment_file.h"
#include "test_util.h"

namespace oklog {
namespace {

std::string Lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return s;
}

std::string FlipCase(std::string s, std::mt19937_64& rng) {
  for (auto& c : s) {
    if (rng() % 2 == 0) continue;
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    else if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return s;
}

std::string RandomLine(std::mt19937_64& rng) {
  static const char* kWords[] = {"GET",    "/api/v1/users", "status=500", "Timeout", "user_id", "request-id",
                                 "naïve",  "Straße",        "日本語",     "ошибка",  "🙂",       "\"level\":\"warn\"",
                                 "x",      "ab",            "abc",        "ABCD",    "a.b.c",   "%s%d",
                                 "\t",     "::1",           "0xdeadBEEF", "é",       "\xff\xfe", "{}", "[]"};
  std::string s;
  size_t n = 1 + rng() % 20;
  for (size_t i = 0; i < n; ++i) {
    if (rng() % 15 == 0) {  // an id: rare enough that blocks keep a useful filter
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(rng()));
      s += std::string_view(hex, 6);
    } else {
      s += kWords[rng() % (sizeof kWords / sizeof *kWords)];
    }
    s += " ,;:=/"[rng() % 6];
  }
  return s;
}

// Tokens: maximal runs of ASCII alphanumerics or bytes >= 0x80.
std::vector<std::string> Tokens(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c >= 0x80) {
      cur += static_cast<char>(c);
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string RandomTerm(std::mt19937_64& rng, const std::string& payload) {
  auto tokens = Tokens(payload);
  switch (rng() % 6) {
    case 0:  // a whole token
      if (!tokens.empty()) return tokens[rng() % tokens.size()];
      [[fallthrough]];
    case 1: {  // part of a token
      if (!tokens.empty()) {
        const std::string& t = tokens[rng() % tokens.size()];
        size_t a = rng() % t.size();
        return t.substr(a, 1 + rng() % (t.size() - a));
      }
      [[fallthrough]];
    }
    case 2: {  // any span, punctuation and spaces included
      size_t a = rng() % payload.size();
      return payload.substr(a, 1 + rng() % 30);
    }
    case 3:  // a span with its ASCII case changed
      return FlipCase(payload.substr(rng() % payload.size(), 4 + rng() % 12), rng);
    case 4:  // something probably absent
      return RandomLine(rng).substr(0, 3 + rng() % 10);
    default: {  // a multi-byte character sequence
      static const char* kUtf8[] = {"日本", "本語", "ß", "aïv", "шибк", "🙂 ", "\xfe "};
      return kUtf8[rng() % (sizeof kUtf8 / sizeof *kUtf8)];
    }
  }
}

TEST(FilterProperty, BlockMayMatchIsNeverFalseForABlockHoldingTheTerms) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    TempDir dir;
    std::vector<std::string> recs;
    for (uint64_t i = 0; i < 4000; ++i)
      recs.push_back(Ulid::FromParts(1000 + i, 0, i).ToString() + " t" + std::to_string(rng() % 3) + " " +
                     RandomLine(rng) + "\n");
    auto w = SegmentWriter::Create(dir.path(), {.block_target_bytes = size_t{16384} << (seed % 3)});
    ASSERT_TRUE(w.ok());
    for (const auto& r : recs) ASSERT_TRUE((*w)->Append(r).ok());
    auto path = (*w)->Finish();
    ASSERT_TRUE(path.ok());
    auto seg = SegmentReader::Open(*path);
    ASSERT_TRUE(seg.ok());
    const auto& blocks = (*seg)->blocks();
    // Lower-cased payloads per block.
    std::vector<std::vector<std::string>> payloads(blocks.size());
    std::string text;
    for (size_t b = 0; b < blocks.size(); ++b) {
      ASSERT_TRUE((*seg)->ReadBlock(b, &text).ok());
      ParseStats ps;
      for (auto r : ParseRecords(text, &ps)) payloads[b].push_back(Lower(std::string(r.substr(Ulid::kTextSize + 1))));
    }
    size_t with_filter = 0;
    for (const auto& b : blocks) with_filter += !b.filter.empty();
    EXPECT_GT(with_filter, blocks.size() / 4);  // else the property would be vacuous
    size_t pruned = 0, checks = 0;
    for (int k = 0; k < 300; ++k) {
      const std::string& rec = recs[rng() % recs.size()];
      const std::string payload = rec.substr(Ulid::kTextSize + 1);
      std::vector<std::string> terms = {RandomTerm(rng, payload)};
      if (k % 4 == 0) terms.push_back(RandomTerm(rng, payload));  // a regex's two literals
      BlockFilterQuery q;
      for (const auto& t : terms) q.RequireLiteral(t);
      for (size_t b = 0; b < blocks.size(); ++b) {
        bool holds = false;
        for (const auto& p : payloads[b]) {
          bool all = true;
          for (const auto& t : terms) all = all && p.find(Lower(t)) != std::string::npos;
          if (all) {
            holds = true;
            break;
          }
        }
        const bool may = (*seg)->BlockMayMatch(b, q);
        ++checks;
        pruned += !may;
        if (holds) {
          ASSERT_TRUE(may) << "block " << b << " holds the term(s) \"" << terms[0] << "\" but is excluded";
        }
      }
    }
    EXPECT_GT(pruned, 0u) << "of " << checks;
  }
}

}  // namespace
}  // namespace oklog
