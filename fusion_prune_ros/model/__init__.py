"""The BEV fusion detector: LiDAR branch, camera branch + geometric lift, ConvFuser, BEV backbone, CenterPoint head."""
