# lua/embed.cmake: writes OUTPUT, a C file holding every Lua file in INPUTS
# as a byte array, so the engine finds its Lua library without a search path.
# Run as: cmake -DOUTPUT=... -DINPUTS=a.lua|b.lua -P embed.cmake
set(body "/* generated from the files in lua/ by lua/embed.cmake; do not edit */\n#include \"engine.h\"\n")
set(table "")
string(REPLACE "|" ";" INPUTS "${INPUTS}")
foreach(input IN LISTS INPUTS)
  get_filename_component(name "${input}" NAME_WE)
  file(READ "${input}" hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR size "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const char src_${name}[] = {${bytes}0};\n")
  string(APPEND table "  {\"${name}\", src_${name}, ${size}},\n")
endforeach()
string(APPEND body "const struct embedded_file embedded_lua[] = {\n${table}  {0, 0, 0}};\n")
file(WRITE "${OUTPUT}.tmp" "${body}")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
