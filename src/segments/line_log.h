// LineLog: the file under a store's small change logs (holdings.log, gaps.log): text lines, each
// one change. Open reads the whole file (a missing one is empty) and hands each complete line to
// its owner; the owner then rewrites it with its live entries (tmp, rename) and appends from
// there. No fsync: each owner says why a lost line is harmless. A line that cannot be read or
// written is counted in the owner's counter and logged; a rewrite that fails leaves the old file
// as it was, and the rest of the run is kept in memory only.
//
// Thread: its owner's (the owners append under their own mutex).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/fs/env.h"
#include "common/status.h"

namespace oklog {

class Counter;

class LineLog {
 public:
  // Reads `path`: `line` gets each complete line (without its LF) and returns false for one it
  // cannot read; those and a torn last line are counted in `errors` and logged once. Fails
  // only for a read error other than NotFound. `errors` must outlive the log.
  static Result<std::unique_ptr<LineLog>> Open(Env* env, std::string path, Counter* errors,
                                               const std::function<bool(std::string_view)>& line);
  // Replaces the file with `live` (lines with their LFs), unless nothing is live and there was
  // no file (the first Append makes it). `what` names the entries for the log ("holdings").
  void Rewrite(const std::string& live, const char* what);
  // Appends one line (with its LF). `if_lost` says what a failed write means ("the batch is
  // held all the same").
  void Append(const std::string& line, const char* if_lost);
  const std::string& path() const { return path_; }

 private:
  LineLog(Env* env, std::string path, Counter* errors) : env_(env), path_(std::move(path)), errors_(errors) {}
  Env* env_;
  std::string path_;
  Counter* errors_;
  bool existed_ = false;
  bool failed_ = false;                    // the rewrite failed: memory only
  std::unique_ptr<WritableFile> file_;     // null until the first line when there was no file
};

}  // namespace oklog
