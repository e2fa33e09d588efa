/*
 * device-fault-probe.cu: does a GPU fault in one CUDA context leave the
 * process's other contexts usable? (backend/cuda/fault.h rests on the
 * answer.) Also: is VMM memory (cuMemCreate) visible from every context,
 * and what does a context cost?
 *
 * On a GPU machine: nvcc -arch=sm_90 -o probe scripts/device-fault-probe.cu -lcuda && ./probe
 *
 * H100, driver 580.159.04, CUDA 13.0 (2026-11-26): a context costs 524 MiB;
 * VMM memory and registered host memory work from a second context; after
 * a fault in context A, context B's launches and copies fail with
 * cudaErrorIllegalAddress, no new context can be created, and
 * cudaDeviceReset does not bring the device back: a fault ends every
 * context of the process.
 */
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
static double now_ms(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
#define CK(x) do{CUresult r_=(x); if(r_){const char*s;cuGetErrorName(r_,&s);printf("%s -> %s\n",#x,s);}}while(0)
__global__ void add1(int *p, int n){int i=blockIdx.x*blockDim.x+threadIdx.x; if(i<n) p[i]+=1;}
__global__ void boom(int *p){ p[threadIdx.x] = 1; }
static CUcontext mkctx(CUdevice d){CUcontext c;
#if CUDA_VERSION >= 13000
 CUctxCreateParams cp={}; CK(cuCtxCreate(&c, &cp, 0, d));
#else
 CK(cuCtxCreate(&c, 0, d));
#endif
 return c;}
static size_t freemem(){size_t f,t;cuMemGetInfo(&f,&t);return f;}
int main(){
  setvbuf(stdout,NULL,_IONBF,0);
  CK(cuInit(0)); CUdevice d; CK(cuDeviceGet(&d,0));
  CUcontext A=mkctx(d); size_t f0=freemem();
  CUcontext B=mkctx(d); CK(cuCtxSetCurrent(B)); size_t f1=freemem();
  printf("context cost: %.1f MiB\n",(f0-f1)/1048576.0);
  // VMM allocation made while A is current
  CK(cuCtxSetCurrent(A));
  CUmemAllocationProp prop={}; prop.type=CU_MEM_ALLOCATION_TYPE_PINNED; prop.location.type=CU_MEM_LOCATION_TYPE_DEVICE; prop.location.id=0;
  size_t gran; CK(cuMemGetAllocationGranularity(&gran,&prop,CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  size_t sz=((64<<20)+gran-1)/gran*gran; CUmemGenericAllocationHandle h; CK(cuMemCreate(&h,sz,&prop,0));
  CUdeviceptr va; CK(cuMemAddressReserve(&va,sz,0,0,0)); CK(cuMemMap(va,sz,0,h,0));
  CUmemAccessDesc ad={}; ad.location=prop.location; ad.flags=CU_MEM_ACCESS_FLAGS_PROT_READWRITE; CK(cuMemSetAccess(va,sz,&ad,1));
  CK(cuMemsetD32(va,5,sz/4));
  // registered host memory
  size_t hs=16<<20; int *host=(int*)mmap(NULL,hs,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  for(size_t i=0;i<hs/4;i++) host[i]=7;
  double t0=now_ms();
  cudaError_t re=cudaHostRegister(host,hs,cudaHostRegisterMapped|cudaHostRegisterPortable); printf("register (A current): %s %.2f ms\n",cudaGetErrorName(re),now_ms()-t0);
  void *dp; cudaHostGetDevicePointer(&dp,host,0); printf("host ptr identity: %s\n", dp==host?"yes":"no");
  // context B uses VMM and host memory
  CK(cuCtxSetCurrent(B));
  add1<<<(sz/4+255)/256,256>>>((int*)va,sz/4); add1<<<(hs/4+255)/256,256>>>(host,hs/4);
  re=cudaDeviceSynchronize(); int v; cuMemcpyDtoH(&v,va+100,4);
  printf("B on VMM + host: %s vmm=%d host=%d\n",cudaGetErrorName(re),v,host[100]);
  // context A faults
  CK(cuCtxSetCurrent(A));
  boom<<<1,32>>>((int*)0x10); re=cudaDeviceSynchronize(); printf("A fault: %s\n",cudaGetErrorName(re));
  re=cudaGetLastError(); printf("A after: %s\n",cudaGetErrorName(re));
  // does B survive?
  CK(cuCtxSetCurrent(B));
  re=cudaGetLastError(); printf("B getlasterror: %s\n",cudaGetErrorName(re));
  add1<<<(sz/4+255)/256,256>>>((int*)va,sz/4); add1<<<(hs/4+255)/256,256>>>(host,hs/4);
  re=cudaDeviceSynchronize(); CUresult cr=cuMemcpyDtoH(&v,va+100,4);
  printf("B after A's fault: %s copy=%d vmm=%d host=%d\n",cudaGetErrorName(re),(int)cr,v,host[100]);
  // destroy A, create C, use VMM again
  t0=now_ms(); CUresult dr=cuCtxDestroy(A); printf("destroy A: %d %.2f ms\n",(int)dr,now_ms()-t0);
  t0=now_ms(); CUcontext C=mkctx(d); printf("create C: %.2f ms\n",now_ms()-t0);
  CK(cuMemSetAccess(va,sz,&ad,1));
  add1<<<(sz/4+255)/256,256>>>((int*)va,sz/4); add1<<<(hs/4+255)/256,256>>>(host,hs/4);
  re=cudaDeviceSynchronize(); cuMemcpyDtoH(&v,va+100,4);
  printf("C: %s vmm=%d host=%d\n",cudaGetErrorName(re),v,host[100]);
  CK(cuCtxSetCurrent(B)); add1<<<1,256>>>((int*)va,256); re=cudaDeviceSynchronize(); cuMemcpyDtoH(&v,va+100,4);
  printf("B again: %s vmm=%d\n",cudaGetErrorName(re),v);
  // primary-context alternative: fault then cudaDeviceReset cost
  CK(cuCtxSetCurrent(NULL));
  cudaSetDevice(0); int *x; cudaMalloc(&x,4); boom<<<1,32>>>((int*)0x10); re=cudaDeviceSynchronize(); printf("primary fault: %s\n",cudaGetErrorName(re));
  CK(cuCtxSetCurrent(B)); add1<<<1,256>>>((int*)va,256); re=cudaDeviceSynchronize(); printf("B after primary fault: %s\n",cudaGetErrorName(re));
  CK(cuCtxSetCurrent(NULL)); t0=now_ms(); re=cudaDeviceReset(); printf("device reset: %s %.2f ms\n",cudaGetErrorName(re),now_ms()-t0);
  re=cudaMalloc(&x,4); printf("primary after reset malloc: %s\n",cudaGetErrorName(re));
  // 8 contexts memory
  f0=freemem(); CUcontext cs[8]; for(int i=0;i<8;i++){cs[i]=mkctx(d); add1<<<1,32>>>((int*)va,32); cudaDeviceSynchronize();}
  CK(cuCtxSetCurrent(cs[7])); printf("8 contexts with a kernel loaded: %.1f MiB\n",(f0-freemem())/1048576.0);
  return 0;
}
