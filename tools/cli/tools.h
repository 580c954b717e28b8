// Client modes of the `oklog` binary. Each takes the arguments after the mode name and
// returns the process exit status.
#pragma once

#include <string>
#include <vector>

namespace oklog {

int RunForward(const std::vector<std::string>& args);
int RunQuery(const std::vector<std::string>& args);
int RunStream(const std::vector<std::string>& args);
int RunTestsvc(const std::vector<std::string>& args);
int RunSegment(const std::vector<std::string>& args);

}  // namespace oklog
