# `cmake --install` (and `make install PREFIX=...`): the headers, libivy.a, libivy.so, the green
# libc where it is built, the ivy command, ivy.pc, the CMake package (find_package(ivy)) and the
# systemd units as examples. Included last, so every target is already defined.
include(CMakePackageConfigHelpers)

# Every public header, the generated version.h among them.
install(DIRECTORY include/ivy ${PROJECT_BINARY_DIR}/include/ivy
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")

set(targets ivy)
if(TARGET ivy_shared)
  list(APPEND targets ivy_shared)
endif()
install(TARGETS ${targets} EXPORT ivyTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT Development
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The green libc is an LD_PRELOAD object, not something to link: no CMake target exported.
if(TARGET ivy_green)
  install(TARGETS ivy_green LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
if(TARGET ivy_cli)
  install(TARGETS ivy_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

set(IVY_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ivy)
install(EXPORT ivyTargets NAMESPACE ivy:: DESTINATION ${IVY_CMAKE_DIR})
configure_package_config_file(cmake/ivyConfig.cmake.in ${PROJECT_BINARY_DIR}/ivyConfig.cmake
                              INSTALL_DESTINATION ${IVY_CMAKE_DIR})
# Before 1.0 a minor release may break the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ivyConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ivyConfig.cmake ${PROJECT_BINARY_DIR}/ivyConfigVersion.cmake
        DESTINATION ${IVY_CMAKE_DIR})

# ivy.pc and ivy.service name install paths, and `cmake --install --prefix P` picks the prefix
# only then: each is configured twice, here with everything but @IVY_PREFIX@, at install time
# with it.
set(IVY_PREFIX "@IVY_PREFIX@")
foreach(dir LIBDIR INCLUDEDIR BINDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(IVY_${dir} "${CMAKE_INSTALL_${dir}}")
    set(IVY_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(IVY_${dir} "${IVY_PREFIX}/${CMAKE_INSTALL_${dir}}")
    set(IVY_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}") # pkg-config --define-prefix works
  endif()
endforeach()
function(ivy_install_configured template destination)
  get_filename_component(name ${template} NAME_WLE)
  set(stage ${PROJECT_BINARY_DIR}/install-staged/${name})
  configure_file(${template} ${stage}.in @ONLY)
  install(CODE "set(IVY_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
                configure_file(\"${stage}.in\" \"${stage}\" @ONLY)")
  install(FILES ${stage} DESTINATION ${destination})
endfunction()

# pkg-config --cflags --libs ivy (libivy.so, or libivy.a where only it is installed: --static
# adds what it needs); ivy-static names libivy.a itself, as libuv-static does for libuv.
ivy_install_configured(cmake/ivy.pc.in ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
ivy_install_configured(cmake/ivy-static.pc.in ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
# Socket activation and Type=notify, as examples to copy into /etc/systemd/system.
ivy_install_configured(dist/systemd/ivy.service.in ${CMAKE_INSTALL_DOCDIR}/examples/systemd)
install(FILES dist/systemd/ivy.socket DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/systemd)
