// swift-tools-version:5.9
// LfmEdge: a thin Swift API over lfm-edge's C ABI. Run ./build-xcframework.sh first: it
// builds LfmEdgeFFI.xcframework (the static library, lfm_edge.h and its module map).
import PackageDescription

let package = Package(
    name: "LfmEdge",
    platforms: [.iOS(.v15)],
    products: [
        .library(name: "LfmEdge", targets: ["LfmEdge"]),
    ],
    targets: [
        .binaryTarget(name: "LfmEdgeFFI", path: "LfmEdgeFFI.xcframework"),
        .target(
            name: "LfmEdge",
            dependencies: ["LfmEdgeFFI"],
            path: "Sources/LfmEdge",
            // wgpu runs on Metal and presents nothing, but links these.
            linkerSettings: [
                .linkedFramework("Metal"),
                .linkedFramework("QuartzCore"),
                .linkedFramework("CoreGraphics"),
                .linkedFramework("Foundation"),
            ]
        ),
    ]
)
