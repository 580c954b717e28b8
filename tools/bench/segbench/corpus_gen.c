// The corpus generator of /work/shared/reference/performance.md Appendix A, verbatim:
// corpus_gen BYTES [1 = prefix a ULID]. Deterministic access-log-like lines.
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
static uint64_t s[2]={0x9E3779B97F4A7C15ULL,0xD1B54A32D192ED03ULL};
static inline uint64_t rnd(void){uint64_t s1=s[0];const uint64_t s0=s[1];s[0]=s0;s1^=s1<<23;
  s[1]=s1^s0^(s1>>17)^(s0>>26);return s[1]+s0;}
static const char *svc[]={"api-gateway","auth","billing","catalog","checkout","search","inventory","notifier"};
static const char *meth[]={"GET","GET","GET","GET","POST","POST","PUT","DELETE"};
static const char *paths[]={"/api/v1/login","/api/v1/users/%u","/api/v1/orders/%u","/api/v1/items/%u/reviews",
  "/healthz","/api/v2/search?q=item%u","/static/js/app.%u.js","/api/v1/cart/%u/checkout"};
static const char *lvl[]={"info","info","info","info","info","info","warn","error","debug","info"};
static const char *ua[]={"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
  "curl/8.4.0","Go-http-client/1.1","okhttp/4.12.0","Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"};
static const char *msg[]={"request completed","request completed","request completed","upstream timeout",
  "cache miss","token refreshed","rate limited","db query slow"};
static const char B32[]="0123456789ABCDEFGHJKMNPQRSTVWXYZ";
int main(int argc,char**argv){
  unsigned long long target=strtoull(argv[1],0,10); int ulid=argc>2&&atoi(argv[2]);
  static char buf[1<<20]; size_t n=0; unsigned long long total=0; uint64_t ms=1700000000000ULL; char line[1024];
  while(total<target){
    ms += (rnd()%3==0);
    uint64_t t=ms/1000; int msec=ms%1000; int H=(t/3600)%24,M=(t/60)%60,S=t%60; int len=0;
    if(ulid){ char u[27]; uint64_t x=ms; for(int i=9;i>=0;i--){u[i]=B32[x&31];x>>=5;}
      for(int i=10;i<26;i++)u[i]=B32[rnd()&31]; u[26]=0; len+=sprintf(line+len,"%s ",u);}
    unsigned r=rnd(); int pi=r%8; char path[128]; snprintf(path,sizeof path,paths[pi],(unsigned)(rnd()%100000));
    int st=(r>>8)%100<90?200:((r>>8)%100<95?404:((r>>8)%100<98?500:302));
    len+=sprintf(line+len,"{\"ts\":\"2023-11-14T%02d:%02d:%02d.%03dZ\",\"level\":\"%s\",\"service\":\"%s\","
      "\"host\":\"node-%02u\",\"remote_addr\":\"10.%u.%u.%u:%u\",\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,"
      "\"bytes\":%u,\"duration_ms\":%u.%03u,\"request_id\":\"%016llx\",\"user_id\":%u,\"user_agent\":\"%s\",\"msg\":\"%s\"}\n",
      H,M,S,msec,lvl[(r>>3)%10],svc[(r>>12)%8],(unsigned)(rnd()%40),(unsigned)(rnd()%256),(unsigned)(rnd()%256),
      (unsigned)(rnd()%256),(unsigned)(1024+rnd()%60000),meth[(r>>16)%8],path,st,(unsigned)(rnd()%200000),
      (unsigned)(rnd()%900),(unsigned)(rnd()%1000),(unsigned long long)rnd(),(unsigned)(rnd()%50000),ua[(r>>20)%5],msg[(r>>24)%8]);
    if(n+len>sizeof buf){fwrite(buf,1,n,stdout);n=0;}
    memcpy(buf+n,line,len);n+=len;total+=len;
  }
  fwrite(buf,1,n,stdout);return 0;}
