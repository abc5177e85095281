// The lfm-edge Android library: the Kotlin API over liblfm_edge_ffi.so, which
// ../build-rust.sh builds with cargo-ndk for each ABI into build/rustJniLibs.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.lfmedge"
    compileSdk = 35

    defaultConfig {
        // Vulkan arrived in Android 7 (24); 26 leaves out its first, least reliable drivers.
        minSdk = 26
        consumerProguardFiles("consumer-rules.pro")
        ndk {
            abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    sourceSets["main"].jniLibs.srcDir(layout.buildDirectory.dir("rustJniLibs"))
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // Flow is part of the public API.
    api("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.9.0")
}

val buildRust by tasks.registering(Exec::class) {
    description = "Builds liblfm_edge_ffi.so for every ABI with cargo-ndk."
    commandLine(rootProject.file("build-rust.sh").absolutePath)
}

tasks.named("preBuild") {
    dependsOn(buildRust)
}
