{
  "targets": [
    {
      "target_name": "r1v",
      "sources": [
        "<!@(node -e \"const fs=require('fs');const dirs=['native/core','native/ops','native/kernels/cpu','native/collectives','bindings'];console.log(dirs.flatMap(d=>fs.readdirSync(d).filter(f=>f.endsWith('.cpp')&&f!=='cuda_allocator.cpp'&&f!=='nccl.cpp').map(f=>d+'/'+f)).join(' '))\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "R1V_WITH_CUDA=0",
        "R1V_VERSION=\"<!(node -p \"require('./package.json').version\")\""
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-O3", "-fexceptions", "-fvisibility=hidden"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
