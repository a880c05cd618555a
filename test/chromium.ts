// WebGPU in headless Chromium (Debian's chromium 156 here): `--enable-unsafe-webgpu` is the flag that
// matters; without it requestAdapter() returns null ("No available adapters"). Chromium then gives its
// bundled SwiftShader Vulkan adapter (vendor 'google', architecture 'swiftshader'; no shader-f16,
// 10 storage buffers per stage). It does not pick Mesa's lavapipe, which Dawn uses in Node:
// --enable-features=Vulkan, --use-vulkan=native or swiftshader, --use-webgpu-adapter=swiftshader,
// --use-angle=vulkan, --disable-vulkan-surface, --ignore-gpu-blocklist and VK_ICD_FILENAMES pointing
// at lavapipe all still give SwiftShader (and --disable-vulkan-fallback-to-gl-for-testing gives no
// adapter at all), so the test asks for no more than --enable-unsafe-webgpu.

/** Debian's chromium; the browser tests skip, saying so, where it is missing. */
export const CHROMIUM = '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
