#!/usr/bin/env python3
"""How brc-plot's 20-colour PALETTE was chosen (crates/brc-plot/src/lib.rs): Okabe-Ito's six
colours without yellow and black, then 14 more picked greedily, each the candidate farthest
(min CIELAB dE*ab) from every colour chosen so far under normal vision and simulated
protanopia, deuteranopia and tritanopia (Machado et al. 2009, severity 1), among sRGB colours
on a 15-step grid with L* 28-78 and chroma >= 20. Prints the chosen colours; pure Python.
"""
import itertools, math
def lin(c):
    c/=255
    return c/12.92 if c<=0.04045 else ((c+0.055)/1.055)**2.4
def unlin(v):
    v=min(max(v,0),1)
    return 12.92*v if v<=0.0031308 else 1.055*v**(1/2.4)-0.055
def lab_from_lin(r,g,b):
    X=0.4124564*r+0.3575761*g+0.1804375*b
    Y=0.2126729*r+0.7151522*g+0.0721750*b
    Z=0.0193339*r+0.1191920*g+0.9503041*b
    Xn,Yn,Zn=0.95047,1.0,1.08883
    f=lambda t: t**(1/3) if t>216/24389 else (24389/27*t+16)/116
    fx,fy,fz=f(X/Xn),f(Y/Yn),f(Z/Zn)
    return (116*fy-16,500*(fx-fy),200*(fy-fz))
# Machado et al. 2009, severity 1.0
M={'prot':[[0.152286,1.052583,-0.204868],[0.114503,0.786281,0.099216],[-0.003882,-0.048116,1.051998]],
   'deut':[[0.367322,0.860646,-0.227968],[0.280085,0.672501,0.047413],[-0.011820,0.042940,0.968881]],
   'trit':[[1.255528,-0.076749,-0.178779],[-0.078411,0.930809,0.147602],[0.004733,0.691367,0.303900]]}
def views(rgb):
    l=[lin(c) for c in rgb]
    out=[lab_from_lin(*l)]
    for m in M.values():
        v=[min(max(sum(m[i][j]*l[j] for j in range(3)),0),1) for i in range(3)]
        out.append(lab_from_lin(*v))
    return out
def de(a,b): return math.dist(a,b)
def mind(cols):
    V=[views(c) for c in cols]
    best=(1e9,None)
    for i,j in itertools.combinations(range(len(cols)),2):
        d=min(de(V[i][k],V[j][k]) for k in range(4))
        dn=de(V[i][0],V[j][0])
        if d<best[0]: best=(d,(i,j,dn))
    return best
hexs=lambda h:tuple(int(h[i:i+2],16) for i in (1,3,5))
okabe=[hexs(h) for h in ['#0072B2','#E69F00','#009E73','#D55E00','#CC79A7','#56B4E9']]
step=15
cands=[]
for r in range(0,256,step):
  for g in range(0,256,step):
    for b in range(0,256,step):
      L,a,bb=views((r,g,b))[0]
      C=math.hypot(a,bb)
      if 28<=L<=78 and C>=20: cands.append((r,g,b))
chosen=list(okabe)
CV=[views(c) for c in chosen]
candV=[views(c) for c in cands]
while len(chosen)<20:
    best=-1;bi=None
    for i,v in enumerate(candV):
        d=min(min(de(v[k],w[k]) for k in range(4)) for w in CV)
        if d>best: best=d;bi=i
    chosen.append(cands[bi]); CV.append(candV[bi])
    print(len(chosen),'#%02X%02X%02X'%cands[bi], round(best,1), [round(x) for x in candV[bi][0]])
print('final min', mind(chosen))
