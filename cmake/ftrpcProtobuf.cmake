# ftrpc_protobuf_generate(TARGET tgt PROTOS a.proto [b.proto ...] [IMPORT_DIRS dir ...]
#                         [OUT_DIR dir])
#
# Runs protoc-c on each .proto at build time and adds the generated .pb-c.c to the target's
# sources, the folder of the .pb-c.h to its include path, and libprotobuf-c to its link (the
# generated code calls it). A typed server or client then includes "foo.pb-c.h" and
# <ftrpc/typed.h> (docs/services.md). Installed with ftrpc and brought by find_package(ftrpc);
# the tree's own build uses it too (examples/greeter, bench/echo.c, the typed tests).
#
#   PROTOS       the .proto files, relative to the calling CMakeLists.txt or absolute
#   IMPORT_DIRS  -I folders for protoc-c (default: the folder of each .proto)
#   OUT_DIR      where the generated files go (default: ${CMAKE_CURRENT_BINARY_DIR}/ftrpc_gen/TGT,
#                a folder per target, so that two targets may compile the same .proto)
#
# protoc-c is looked for on PATH (Debian: protobuf-c-compiler); set FTRPC_PROTOC_C to name
# another.
include_guard(GLOBAL)

find_program(FTRPC_PROTOC_C NAMES protoc-c DOC "protoc-c, protobuf-c's code generator")
if(NOT TARGET PkgConfig::PROTOBUFC)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(PROTOBUFC REQUIRED IMPORTED_TARGET libprotobuf-c)
endif()

function(ftrpc_protobuf_generate)
  cmake_parse_arguments(arg "" "TARGET;OUT_DIR" "PROTOS;IMPORT_DIRS" ${ARGN})
  if(NOT arg_TARGET OR NOT arg_PROTOS)
    message(FATAL_ERROR "ftrpc_protobuf_generate: TARGET and PROTOS are required")
  endif()
  if(NOT TARGET ${arg_TARGET})
    message(FATAL_ERROR "ftrpc_protobuf_generate: no target named ${arg_TARGET}")
  endif()
  if(NOT FTRPC_PROTOC_C)
    message(FATAL_ERROR "ftrpc_protobuf_generate: protoc-c not found (Debian: protobuf-c-compiler)")
  endif()
  if(NOT arg_OUT_DIR)
    set(arg_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/ftrpc_gen/${arg_TARGET})
  endif()
  file(MAKE_DIRECTORY ${arg_OUT_DIR})
  foreach(proto ${arg_PROTOS})
    get_filename_component(abs ${proto} ABSOLUTE)
    get_filename_component(dir ${abs} DIRECTORY)
    get_filename_component(name ${abs} NAME_WE)
    set(import_dirs ${arg_IMPORT_DIRS})
    if(NOT import_dirs)
      set(import_dirs ${dir})
    endif()
    # protoc-c names its outputs after the .proto's path below the import folder that holds it
    set(rel ${name})
    foreach(idir ${import_dirs})
      get_filename_component(idir_abs ${idir} ABSOLUTE)
      file(RELATIVE_PATH r ${idir_abs} ${abs})
      if(NOT r MATCHES "^\\.\\./")
        string(REGEX REPLACE "\\.proto$" "" rel ${r})
        break()
      endif()
    endforeach()
    set(includes)
    foreach(idir ${import_dirs})
      get_filename_component(idir_abs ${idir} ABSOLUTE)
      list(APPEND includes -I${idir_abs})
    endforeach()
    add_custom_command(
      OUTPUT ${arg_OUT_DIR}/${rel}.pb-c.c ${arg_OUT_DIR}/${rel}.pb-c.h
      COMMAND ${FTRPC_PROTOC_C} --c_out=${arg_OUT_DIR} ${includes} ${abs}
      DEPENDS ${abs}
      COMMENT "protoc-c ${name}.proto"
      VERBATIM)
    target_sources(${arg_TARGET} PRIVATE ${arg_OUT_DIR}/${rel}.pb-c.c ${arg_OUT_DIR}/${rel}.pb-c.h)
  endforeach()
  target_include_directories(${arg_TARGET} PRIVATE ${arg_OUT_DIR})
  target_link_libraries(${arg_TARGET} PRIVATE PkgConfig::PROTOBUFC)
endfunction()
