# tests/tests.cmake: every test the suite runs. C unit tests; Lua tests run
# by the engine; end-to-end tests (Python standard library) that run the
# built binary, each against every engine variant (plain and ASan+UBSan);
# a valgrind leak check on the plain binary.
find_package(Python3 REQUIRED COMPONENTS Interpreter)

add_executable(test_text tests/unit/test_text.c engine/text.c)
target_include_directories(test_text PRIVATE engine)
target_compile_options(test_text PRIVATE ${WARNING_FLAGS} ${SANITIZER_FLAGS})
target_link_options(test_text PRIVATE ${SANITIZER_FLAGS})
add_test(NAME unit_text COMMAND test_text)

set(SANITIZER_ENV
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")

file(GLOB LUA_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/lua/test_*.lua)
file(GLOB E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/test_*.py)
list(REMOVE_ITEM E2E_TESTS ${CMAKE_SOURCE_DIR}/tests/e2e/test_valgrind.py)

foreach(variant IN LISTS ENGINE_VARIANTS)
  foreach(file IN LISTS LUA_TESTS)
    get_filename_component(name ${file} NAME_WE)
    add_test(NAME ${variant}:lua:${name}
             COMMAND $<TARGET_FILE:${variant}> -q ${file}
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(${variant}:lua:${name} PROPERTIES
                         ENVIRONMENT "${SANITIZER_ENV}" TIMEOUT 120)
  endforeach()
  foreach(file IN LISTS E2E_TESTS)
    get_filename_component(name ${file} NAME_WE)
    add_test(NAME ${variant}:e2e:${name}
             COMMAND ${Python3_EXECUTABLE} ${file}
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(${variant}:e2e:${name} PROPERTIES
      ENVIRONMENT "ENGINE_BIN=$<TARGET_FILE:${variant}>;${SANITIZER_ENV}"
      TIMEOUT 300)
  endforeach()
endforeach()

find_program(VALGRIND valgrind)
if(VALGRIND)
  add_test(NAME engine:valgrind
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/e2e/test_valgrind.py
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(engine:valgrind PROPERTIES
    ENVIRONMENT "ENGINE_BIN=$<TARGET_FILE:engine>;VALGRIND=${VALGRIND}" TIMEOUT 600)
endif()
