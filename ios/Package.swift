// swift-tools-version:5.9
// LfmEdge: a thin Swift API over lfm-edge's C ABI.
//
// Apple: run ./build-xcframework.sh first; it builds LfmEdgeFFI.xcframework (the static
// library, lfm_edge.h and its module map).
//
// Linux: LfmEdgeFFI is ffi/include/lfm_edge.h and the static liblfm_edge_ffi.a, found in
// $LFM_EDGE_LIB_DIR (default: ../target/release). With liblfm_edge_ffi.so in the same
// folder the linker takes that instead (an rpath to the folder is set for that case):
//   cargo build --release -p lfm-edge-ffi && swift test
// ffi/tests/swift.rs runs the tests this way, inside the root of scripts/swift/root.sh.
import PackageDescription

#if os(Linux)
let libDir = Context.environment["LFM_EDGE_LIB_DIR"]
    ?? "\(Context.packageDirectory)/../target/release"
let ffi: Target = .systemLibrary(name: "LfmEdgeFFI", path: "Linux/LfmEdgeFFI")
let platformLinkerSettings: [LinkerSetting] = [
    .unsafeFlags(["-L", libDir, "-Xlinker", "-rpath", "-Xlinker", libDir]),
]
#else
let ffi: Target = .binaryTarget(name: "LfmEdgeFFI", path: "LfmEdgeFFI.xcframework")
// wgpu runs on Metal and presents nothing, but links these.
let platformLinkerSettings: [LinkerSetting] = [
    .linkedFramework("Metal"),
    .linkedFramework("QuartzCore"),
    .linkedFramework("CoreGraphics"),
    .linkedFramework("Foundation"),
]
#endif

let package = Package(
    name: "LfmEdge",
    platforms: [.iOS(.v15)],
    products: [
        .library(name: "LfmEdge", targets: ["LfmEdge"]),
    ],
    targets: [
        ffi,
        .target(
            name: "LfmEdge",
            dependencies: ["LfmEdgeFFI"],
            path: "Sources/LfmEdge",
            linkerSettings: platformLinkerSettings
        ),
        .testTarget(
            name: "LfmEdgeTests",
            dependencies: ["LfmEdge"],
            path: "Tests/LfmEdgeTests"
        ),
    ]
)
