# libivy.so exports exactly the public API: every ivy_* name that include/ivy/*.h declares
# (internal functions are ivy__*, and everything else stays local). The linker version script
# is written from the headers at configure time; editing a header re-runs the configuration.
file(GLOB IVY_PUBLIC_HEADERS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/include/ivy/*.h
     ${PROJECT_SOURCE_DIR}/include/ivy/*.h.in)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${IVY_PUBLIC_HEADERS})
set(names "")
foreach(h ${IVY_PUBLIC_HEADERS})
  file(READ ${h} text)
  # A name followed by "(": declarations, and names in comments or macros, which are harmless
  # (a name the library does not define exports nothing).
  string(REGEX MATCHALL "ivy_[a-z0-9][a-z0-9_]*[ \t]*\\(" found "${text}")
  foreach(f ${found})
    string(REGEX REPLACE "[ \t]*\\($" "" f "${f}")
    list(APPEND names ${f})
  endforeach()
endforeach()
list(REMOVE_DUPLICATES names)
list(SORT names)
list(JOIN names ";\n    " body)
set(IVY_VERSION_SCRIPT ${PROJECT_BINARY_DIR}/libivy.map)
# configure_file rewrites the map only when it changes, so an unrelated header edit relinks nothing.
set(IVY_EXPORTED_NAMES "    ${body};")
configure_file(${CMAKE_CURRENT_LIST_DIR}/libivy.map.in ${IVY_VERSION_SCRIPT} @ONLY)
# The same names as a dynamic list, for a program that links libivy.a and lends its ivy_*
# functions to the modules it dlopens (-Wl,--dynamic-list=${IVY_DYNAMIC_LIST}).
set(IVY_DYNAMIC_LIST ${PROJECT_BINARY_DIR}/libivy.dynlist)
configure_file(${CMAKE_CURRENT_LIST_DIR}/libivy.dynlist.in ${IVY_DYNAMIC_LIST} @ONLY)
