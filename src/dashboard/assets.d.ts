/** Style sheets imported for their effect: Bun's bundler puts them in the page's CSS. */
declare module "*.css"
