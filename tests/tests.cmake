# tests/tests.cmake: every test the suite runs, one ctest entry per test
# case: C unit tests; Lua tests run by the engine; end-to-end tests (Python
# standard library) that run the built binary. Lua and end-to-end cases run
# against every engine variant (plain and ASan+UBSan); the valgrind leak
# checks run on the plain binary.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
# The interpreter itself, not a wrapper in front of it: a version
# manager's shim (pyenv's) costs 0.3 s a start, and the suite starts
# Python about 900 times.
execute_process(COMMAND ${Python3_EXECUTABLE} -c "import sys; print(sys.executable)"
                OUTPUT_VARIABLE PYTHON_ITSELF OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE PYTHON_RC)
if(PYTHON_RC EQUAL 0 AND EXISTS "${PYTHON_ITSELF}")
  set(Python3_EXECUTABLE ${PYTHON_ITSELF})
endif()

function(unit_test name)
  add_executable(test_${name} tests/unit/test_${name}.c ${ARGN})
  target_include_directories(test_${name} PRIVATE engine)
  target_compile_definitions(test_${name} PRIVATE _DEFAULT_SOURCE)
  target_compile_options(test_${name} PRIVATE ${WARNING_FLAGS} ${SANITIZER_FLAGS})
  target_link_options(test_${name} PRIVATE ${SANITIZER_FLAGS})
  target_link_libraries(test_${name} PRIVATE m)
  add_test(NAME unit:${name} COMMAND test_${name})
endfunction()
unit_test(text engine/text.c)
unit_test(rules engine/rules.c engine/text.c)

# Unit tests of the runtime: linked with the (sanitized) core.
function(core_test name)
  add_executable(test_${name} tests/unit/test_${name}.c)
  target_compile_options(test_${name} PRIVATE ${WARNING_FLAGS} ${SANITIZER_FLAGS})
  target_link_options(test_${name} PRIVATE ${SANITIZER_FLAGS})
  target_link_libraries(test_${name} PRIVATE ${UNIT_CORE})
  add_test(NAME unit:${name} COMMAND test_${name})
  set_tests_properties(unit:${name} PROPERTIES ENVIRONMENT "${SANITIZER_ENV}")
endfunction()

set(SANITIZER_ENV
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")

core_test(task)
core_test(errors)

# A short, bounded run of every fuzzer (./dev fuzz runs them long).
find_program(CLANG clang)
if(CLANG)
  add_test(NAME fuzz:short COMMAND ${CMAKE_SOURCE_DIR}/tools/fuzz 2
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  # (the longest cases get a COST: ctest -j starts them first, so they
  # overlap the many short ones instead of running alone at the end)
  set_tests_properties(fuzz:short PROPERTIES TIMEOUT 600 RUN_SERIAL FALSE COST 1000 ENVIRONMENT
    "ENGINE_BUILD_DIR=${CMAKE_BINARY_DIR};ENGINE_CJSON_LIBRARY=${LUACJSON_LIBRARY}")
endif()

# A smoke run of the benchmark (./dev bench runs it whole): small N, no
# timing asserted, only that the engine and the floor complete the same
# requests and the table comes out.
add_test(NAME bench:smoke COMMAND ${Python3_EXECUTABLE} tests/bench/bench.py --sizes 1,50
         --callgrind 0 --waiting 0 --startup-runs 5 --stores 0 --history 0
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(bench:smoke PROPERTIES TIMEOUT 300 COST 100
    PASS_REGULAR_EXPRESSION "\\| 50 \\| 0.05 \\| \\*\\*engine / floor\\*\\* \\|")

# The names in t.test("name", ...) lines of a Lua test file.
function(lua_test_names file out)
  file(STRINGS ${file} lines REGEX "^t\\.test\\(\"[^\"]+\"")
  set(names "")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^t\\.test\\(\"([^\"]+)\".*" "\\1" name "${line}")
    list(APPEND names "${name}")
  endforeach()
  set(${out} "${names}" PARENT_SCOPE)
endfunction()

# Class.test_method ids of a unittest file.
function(python_test_ids file out)
  file(STRINGS ${file} lines REGEX "^class [A-Za-z0-9_]+|^    def test_[a-z0-9_]+")
  set(ids "")
  set(class "")
  foreach(line IN LISTS lines)
    if(line MATCHES "^class ([A-Za-z0-9_]+)")
      set(class ${CMAKE_MATCH_1})
    elseif(line MATCHES "def (test_[a-z0-9_]+)")
      list(APPEND ids "${class}.${CMAKE_MATCH_1}")
    endif()
  endforeach()
  set(${out} "${ids}" PARENT_SCOPE)
endfunction()

file(GLOB LUA_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/lua/test_*.lua)
file(GLOB E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/test_*.py)
list(REMOVE_ITEM E2E_TESTS ${CMAKE_SOURCE_DIR}/tests/e2e/test_valgrind.py)

# Every end-to-end test keeps the engine's output; after the suite, one
# scan checks it all for the test secrets.
set(OUTPUT_DIR ${CMAKE_BINARY_DIR}/test-output)
add_test(NAME secrets:clear COMMAND ${Python3_EXECUTABLE} scan_secrets.py --clear
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/e2e)
add_test(NAME secrets:scan COMMAND ${Python3_EXECUTABLE} scan_secrets.py
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/e2e)
set_tests_properties(secrets:clear PROPERTIES FIXTURES_SETUP engine_output
                     ENVIRONMENT "ENGINE_TEST_OUTPUT=${OUTPUT_DIR}")
set_tests_properties(secrets:scan PROPERTIES FIXTURES_CLEANUP engine_output
                     ENVIRONMENT "ENGINE_TEST_OUTPUT=${OUTPUT_DIR}")

# One PostgreSQL server for the whole run (tests/pg_server.py), for the
# cases that only need a database of their own; a case that stops its
# server starts one of its own.
set(PG_FIXTURE ${CMAKE_BINARY_DIR}/pg-fixture.json)
add_test(NAME pg:start COMMAND ${Python3_EXECUTABLE} pg_server.py fixture start ${PG_FIXTURE}
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests)
add_test(NAME pg:stop COMMAND ${Python3_EXECUTABLE} pg_server.py fixture stop ${PG_FIXTURE}
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests)
set_tests_properties(pg:start PROPERTIES FIXTURES_SETUP pg_server)
set_tests_properties(pg:stop PROPERTIES FIXTURES_CLEANUP pg_server)

foreach(variant IN LISTS ENGINE_VARIANTS)
  foreach(file IN LISTS LUA_TESTS)
    get_filename_component(module ${file} NAME_WE)
    lua_test_names(${file} names)
    foreach(name IN LISTS names)
      string(REGEX REPLACE "[^A-Za-z0-9_]+" "_" slug "${name}")
      set(id "${variant}:${module}:${slug}")
      add_test(NAME ${id} COMMAND $<TARGET_FILE:${variant}> -q ${file} ${name}
               WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
      set_tests_properties(${id} PROPERTIES TIMEOUT 120 ENVIRONMENT
        "${SANITIZER_ENV};ENGINE_STATE_DIR=${CMAKE_BINARY_DIR}/test-state/${id}")
    endforeach()
  endforeach()
  foreach(file IN LISTS E2E_TESTS)
    get_filename_component(module ${file} NAME_WE)
    python_test_ids(${file} ids)
    foreach(case IN LISTS ids)
      set(id "${variant}:${module}:${case}")
      add_test(NAME ${id} COMMAND ${Python3_EXECUTABLE} -m unittest ${module}.${case}
               WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/e2e)
      set_tests_properties(${id} PROPERTIES FIXTURES_REQUIRED engine_output TIMEOUT 300
        ENVIRONMENT "ENGINE_BIN=$<TARGET_FILE:${variant}>;ENGINE_TEST_OUTPUT=${OUTPUT_DIR};${SANITIZER_ENV}")
      if(module STREQUAL "test_soak")
        set_tests_properties(${id} PROPERTIES COST 500)
      elseif(module MATCHES "^test_(postgres|ui)$")
        set_tests_properties(${id} PROPERTIES COST 50 FIXTURES_REQUIRED "engine_output;pg_server"
          ENVIRONMENT "ENGINE_BIN=$<TARGET_FILE:${variant}>;ENGINE_TEST_OUTPUT=${OUTPUT_DIR};ENGINE_TEST_PG=${PG_FIXTURE};${SANITIZER_ENV}")
      elseif(module STREQUAL "test_budget")
        set_tests_properties(${id} PROPERTIES COST 50)
      endif()
    endforeach()
  endforeach()
endforeach()

find_program(VALGRIND valgrind)
if(VALGRIND)
  python_test_ids(${CMAKE_SOURCE_DIR}/tests/e2e/test_valgrind.py ids)
  foreach(case IN LISTS ids)
    set(id "engine:test_valgrind:${case}")
    add_test(NAME ${id} COMMAND ${Python3_EXECUTABLE} -m unittest test_valgrind.${case}
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/e2e)
    set_tests_properties(${id} PROPERTIES COST 200
      ENVIRONMENT "ENGINE_BIN=$<TARGET_FILE:engine>;VALGRIND=${VALGRIND}" TIMEOUT 600)
  endforeach()
endif()
