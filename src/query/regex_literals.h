// Required-literal analysis of an RE2 pattern: strings that every match must contain. They feed
// the block filter (skip blocks that lack them) and the scan prefilter (find candidate records
// with memmem before running RE2). Soundness is the contract — a literal returned here is a
// substring of every text the pattern matches (case-insensitively when fold_case) — so the
// analysis is conservative: any syntax it does not fully understand yields fewer literals, never
// a wrong one. Pure function, any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace oklog {

struct RequiredLiteral {
  std::string text;        // UTF-8 bytes
  bool fold_case = false;  // must appear under RE2's (?i) case folding, not byte for byte
  bool operator==(const RequiredLiteral&) const = default;
};

// The pattern must already have compiled with RE2's default options (UTF-8, Perl classes);
// behaviour on invalid patterns is "some subset", which is still sound for valid ones.
// Returns maximal literal runs found in the top-level concatenation (and in groups and
// one-or-more repetitions inside it), longest first, without empty strings.
std::vector<RequiredLiteral> RequiredLiterals(std::string_view pattern);

// True when the walk understood the whole pattern and it holds no ^, $, \A or \z outside
// character classes. Such a pattern matches a payload iff it has a match starting inside it
// when searched in the whole block (a payload sits between ' ' and '\n', both non-word bytes,
// as are the text edges for \b), which lets the matcher search blocks rather than records.
bool HasNoAnchors(std::string_view pattern);

}  // namespace oklog
